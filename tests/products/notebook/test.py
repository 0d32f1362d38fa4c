"""The deploy's smoke test: a note made and read back through the database."""

import requests

from apiphant.test import counts, test
from apiphant.testing.functional import url

made = requests.post(url("notes", "create"), json={"token": "smoke"}, timeout=10)
assert made.status_code == 200, made.text
note = made.json()["id"]
test("notes", "read", {"id": note}, 200, {"id": note, "token": "smoke"})
test("notes", "read", {"id": 0}, 404, {"error": "404 Not Found"})
print(f"OK: {counts.passed} passed")
