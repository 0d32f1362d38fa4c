"""Functional tests of myproduct, run by ./test.sh against a live server or a deployment,
after every deploy: fast, and safe against production (the users part touches only the
rows it creates, with emails of its own run, and deletes them).

Every line is one request and its expected answer; the first mismatch stops
the run with both sides shown.
"""

import uuid
from unittest.mock import ANY

import requests

from apiphant.test import config, counts, test, url

# The product
test("echo", "read", {"hello": "world"}, 200, {"hello": "world", "server": "myproduct"})
test(
    "echo", "read", {"nested": {"a": [1, 2]}}, 200, {"nested": {"a": [1, 2]}, "server": "myproduct"}
)
test(
    "users/settings",
    "update",
    {"user_id": 7, "settings": {"theme": "dark"}},
    200,
    {"user_id": 7, "settings": {"theme": "dark", "language": "en"}},
)
test(
    "users/settings",
    "read",
    {"user_id": 7},
    200,
    {"user_id": 7, "settings": {"theme": "light", "language": "en"}},
)
test(
    "users/settings",
    "update",
    {"user_id": 7, "settings": {"theme": "pink"}},
    400,
    {"error": {"field": "settings.theme", "state": "invalid", "explain": "light or dark"}},
)
test("echo", "delete", None, 404, {"error": "404 Not Found"})
test("echo", "read", b"[1, 2]", 400,
     {"error": "Request content should be JSON Object: got an array"})


def no_database() -> str:
    """The server's own word that it has no database (its 503), or "" when it has one."""
    answer = requests.post(url("users", "read"), json={"limit": 1}, timeout=config.timeout)
    error = answer.json().get("error") if answer.status_code == 503 else None
    return error if isinstance(error, str) and error.startswith("no database") else ""


def users() -> None:
    """Create, read, page, update and delete, and the 400, 404 and 409 a client meets."""
    run = uuid.uuid4().hex[:12]
    ann, bob = f"ann-{run}@example.com", f"bob-{run}@example.com"
    taken = {"error": {"field": "email", "state": "taken",
                       "explain": "a user with this email exists"}}  # fmt: skip
    created: list[int] = []
    try:
        a = test("users", "create", {"email": ann, "name": "Ann"}, 201,
                 {"id": ANY, "email": ann, "name": "Ann", "created_at": ANY}).json()
        created.append(a["id"])
        b = test("users", "create", {"email": bob}, 201,
                 {"id": ANY, "email": bob, "name": "", "created_at": ANY}).json()
        created.append(b["id"])
        test("users", "create", {"email": ann.upper()}, 409, taken)
        test("users", "create", {"email": "ann"}, 400, {"error": {
            "field": "email", "state": "invalid", "explain": "an email address like ann@example.com"}})
        test("users", "read", {"id": a["id"]}, 200, a)
        # A page of one, after the id just below ours: ours alone, whoever else writes.
        test("users", "read", {"after": b["id"] - 1, "limit": 1}, 200, {"users": [b], "next": b["id"]})
        test("users", "update", {"id": a["id"], "name": "Ann B."}, 200, {**a, "name": "Ann B."})
        test("users", "update", {"id": b["id"], "email": ann}, 409, taken)
        test("users", "delete", {"id": b["id"]}, 200, b)
        test("users", "read", {"id": b["id"]}, 404, {"error": "404 Not Found"})
        test("users", "update", {"id": b["id"], "name": "Bob"}, 404, {"error": "404 Not Found"})
        test("users", "delete", {"id": b["id"]}, 404, {"error": "404 Not Found"})
    finally:  # a failed line leaves no row behind
        for user_id in created:
            requests.post(url("users", "delete"), json={"id": user_id}, timeout=config.timeout)


missing = no_database()
if missing:
    print(f"SKIPPED users: the server has no database ({missing})")
else:
    users()

print(f"OK: {counts.passed} passed")
