"""apiphant's own functional self-tests (as in the seed), against tests/products/selfcheck:
what a handler may return or raise, and apiphant.validation.field. Run by
`./test.sh --product tests/products/selfcheck` (tests/test_functional.py does).
"""

from apiphant.test import counts, test

# apiphant.app: routing, methods, bodies, handler results
test("self", "delete", None, 404, {"error": "404 Not Found"})
test("nothing", "read", None, 404, {"error": "404 Not Found"})
test("self", "create", None, 405, {"error": "405 Method Not Allowed"}, method="GET")
test("self", "create", "invalid_json_object", 400,
     {"error": "Request content should be JSON Object: got a string"})
test("self", "create", b"{not json", 400,
     {"error": "Request content should be JSON Object: invalid JSON at line 1, column 2: "
               "Expecting property name enclosed in double quotes"})
test("self", "create", b"\xff\xfe{}", 400,
     {"error": "Request content should be JSON Object: not UTF-8 (byte 0xff at offset 0)"})
test(
    "self",
    "create",
    {"test": "return invalid_json_object"},
    500,
    {"error": "500 Internal Server Error"},
)
test("self", "create", {"test": "1/0"}, 500, {"error": "500 Internal Server Error"})
test("self", "create", None, 200, {"ok": True, "x": None})
test("self", "create", {"test": "return none"}, 200, {})
test("self", "create", {"test": "api_error"}, 403, {"error": "403 Forbidden"})
test("self", "create", {"test": "api_error_body"}, 409, {"error": {"conflict": "exists"}})
test(
    "self",
    "create",
    {"test": "invalid_explain"},
    400,
    {"error": {"field": "id", "state": "invalid", "explain": -1}},
)
test("self", "create", {"test": "attribute", "nested": {"value": 5}}, 200, {"ok": True, "x": 5})

# apiphant.validation.field
test("self", "create", {"test": "optional"}, 200, {"ok": True, "x": None})
test("self", "create", {"test": "default"}, 200, {"ok": True, "x": "X"})
test("self", "create", {"test": "required"}, 400, {"error": {"field": "x", "state": "missing"}})
test("self", "create", {"test": "required", "x": "X"}, 200, {"ok": True, "x": "X"})
test(
    "self",
    "create",
    {"test": "valid_value", "x": "Y"},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "equal to \"X\""}},
)
test("self", "create", {"test": "valid_value", "x": "X"}, 200, {"ok": True, "x": "X"})
test(
    "self",
    "create",
    {"test": "valid_type", "x": "X"},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "an integer"}},
)
test(
    "self",
    "create",
    {"test": "valid_type", "x": True},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "an integer"}},
)
test("self", "create", {"test": "valid_type", "x": 42}, 200, {"ok": True, "x": 42})
test(
    "self",
    "create",
    {"test": "valid_length", "x": ["X"]},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "exactly 2 items"}},
)
test(
    "self", "create", {"test": "valid_length", "x": ["X", "Y"]}, 200, {"ok": True, "x": ["X", "Y"]}
)
test(
    "self",
    "create",
    {"test": "max_length", "x": "123"},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "at most 2 characters"}},
)
test("self", "create", {"test": "max_length", "x": "12"}, 200, {"ok": True, "x": "12"})
test("self", "create", {"test": "max_length", "x": "1"}, 200, {"ok": True, "x": "1"})
test(
    "self",
    "create",
    {"test": "max_length", "x": 1},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "a length of at most 2"}},
)
test(
    "self",
    "create",
    {"test": "explain", "x": "X"},
    400,
    {"error": {"field": "x", "state": "invalid", "explain": "should be integer"}},
)
test(
    "self",
    "create",
    {"test": "subfield", "address": {}},
    400,
    {"error": {"field": "address.city", "state": "missing"}},
)
test(
    "self",
    "create",
    {"test": "list_item", "items": [{"id": 1}, {"id": "2"}]},
    400,
    {"error": {"field": "items[1].id", "state": "invalid", "explain": "an integer"}},
)

print(f"OK: {counts.passed} passed")
