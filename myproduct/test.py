"""Functional tests of myproduct, run by ./test.sh against a live server or a deployment.

Every line is one request and its expected answer; the first mismatch stops
the run with both sides shown.
"""

from apiphant.test import counts, test

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

print(f"OK: {counts.passed} passed")
