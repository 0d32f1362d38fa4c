import json

import pytest

from apiphant.errors import ApiError
from apiphant.request import parse
from apiphant.validation import BadRequest, Invalid, Missing, field


def error_of(call):
    with pytest.raises(ApiError) as caught:
        call()
    assert caught.value.status == 400
    return caught.value.body["error"]


def test_seed_bodies():
    assert Missing("id").body == {"error": {"field": "id", "state": "missing"}}
    assert Invalid("id").body == {"error": {"field": "id", "state": "invalid"}}
    assert Invalid("id", -1).body == {"error": {"field": "id", "state": "invalid", "explain": -1}}
    assert isinstance(Invalid("id"), BadRequest) and isinstance(Missing("id"), ApiError)


def test_optional_default_and_required():
    request = parse(b'{"x": "X", "nothing": null}')
    assert field(request, "x") == "X"
    assert field(request, "y") is None
    assert field(request, "y", default_value=3) == 3
    assert field(request, "nothing", is_required=True) is None
    assert error_of(lambda: field(request, "y", is_required=True)) == {
        "field": "y", "state": "missing"}
    assert error_of(lambda: field(request, "y", is_required=True, explain="give y")) == {
        "field": "y", "state": "missing", "explain": "give y"}


def test_a_whole_number_is_an_integer_as_json_schema_says() -> None:
    """JSON has one kind of number: 2.0 is JSON Schema's integer (the OpenAPI document's),
    returned as the int 2; a float stays a float where floats are allowed."""
    assert type(field({"x": 2.0}, "x", valid_type=int)) is int
    assert field({"x": 2.0}, "x", valid_type=int, valid_value={1, 2}) == 2
    assert type(field({"x": 2.0}, "x", valid_type=(int, float))) is float
    assert error_of(lambda: field({"x": 2.5}, "x", valid_type=int))["explain"] == "an integer"


@pytest.mark.parametrize(
    ("value", "valid_type", "ok"),
    [
        (42, int, True),
        (True, int, False),
        (False, int, False),
        (True, bool, True),
        (1, bool, False),
        (1, float, True),
        (1.5, float, True),
        (True, float, False),
        (1.5, int, False),
        (2.0, int, True),
        (2.0, (int, type(None)), True),
        (2.0, float, True),
        ("1", int, False),
        ({}, dict, True),
        ([], list, True),
        ("s", (int, str), True),
        (None, int, False),
    ],
)
def test_types_are_checked_as_json_means_them(value, valid_type, ok):
    request = {"x": value}
    if ok:
        assert field(request, "x", valid_type=valid_type) == value
    else:
        assert error_of(lambda: field(request, "x", valid_type=valid_type))["state"] == "invalid"


def test_valid_value_equality_set_and_predicate():
    request = {"x": "b", "n": 1, "flag": True}
    assert field(request, "x", valid_value="b") == "b"
    assert field(request, "x", valid_value={"a", "b"}) == "b"
    assert field(request, "n", valid_value=lambda n: n > 0) == 1
    assert error_of(lambda: field(request, "x", valid_value="a"))["state"] == "invalid"
    assert error_of(lambda: field(request, "x", valid_value={"a"}))["state"] == "invalid"
    assert error_of(lambda: field(request, "flag", valid_value=1))["state"] == "invalid"
    assert error_of(lambda: field(request, "flag", valid_value={1}))["state"] == "invalid"
    assert error_of(lambda: field(request, "x", valid_value=lambda v: v > 0))["state"] == "invalid"


def test_a_broken_rule_explains_what_was_expected():
    request = parse(b'{"name": "too long a name", "n": 5, "tags": [1, 2, 3], "flag": true}')

    def explain(**rule):
        return error_of(lambda: field(request, rule.pop("name", "name"), **rule))

    assert explain(max_length=8) == {"field": "name", "state": "invalid",
                                     "explain": "at most 8 characters"}
    assert explain(valid_length=2)["explain"] == "exactly 2 characters"
    assert explain(name="tags", max_length=2)["explain"] == "at most 2 items"
    assert explain(name="n", max_length=2)["explain"] == "a length of at most 2"
    assert explain(name="n", valid_length=1)["explain"] == "a length of 1"
    assert explain(valid_type=int)["explain"] == "an integer"
    assert explain(name="flag", valid_type=(int, float))["explain"] == "an integer or a number"
    assert explain(name="n", valid_type=(str, type(None)))["explain"] == "a string or null"
    assert explain(name="n", valid_type=dict)["explain"] == "an object"
    assert explain(name="n", valid_type=list)["explain"] == "an array"
    assert explain(name="n", valid_type=bool)["explain"] == "true or false"
    assert explain(valid_value="Ann")["explain"] == 'equal to "Ann"'
    assert explain(valid_value={"b", "a"})["explain"] == 'one of "a", "b"'
    # the rule of a predicate is the handler's own; the handler's explain wins; None: none
    assert explain(valid_value=lambda v: False) == {"field": "name", "state": "invalid"}
    assert explain(max_length=8, explain="a short name")["explain"] == "a short name"
    assert "explain" not in explain(max_length=8, explain=None)


def test_lengths_refuse_values_without_a_length_instead_of_crashing():
    request = {"s": "123", "n": 5}
    assert field(request, "s", valid_length=3) == "123"
    assert field(request, "s", max_length=3) == "123"
    assert error_of(lambda: field(request, "s", max_length=2))["state"] == "invalid"
    assert error_of(lambda: field(request, "n", max_length=2))["state"] == "invalid"
    assert error_of(lambda: field(request, "n", valid_length=1))["state"] == "invalid"


def test_subfields_report_the_whole_path():
    request = parse(b'{"address": {"geo": {"lat": "x"}}, "items": [{"id": 1}, {"id": "2"}]}')
    address = field(request, "address", is_required=True, valid_type=dict)
    assert error_of(lambda: field(address, "city", is_required=True)) == {
        "field": "address.city", "state": "missing"}
    geo = field(address, "geo", valid_type=dict)
    assert error_of(lambda: field(geo, "lat", valid_type=float))["field"] == "address.geo.lat"
    items = field(request, "items", valid_type=list)
    assert field(items[0], "id", valid_type=int) == 1
    assert error_of(lambda: field(items[1], "id", valid_type=int))["field"] == "items[1].id"
    assert error_of(lambda: field(items, 5, is_required=True))["field"] == "items[5]"


@pytest.mark.parametrize(("extras", "error"), [
    ([{"note": "a"}, 5], {"field": "extras[1]", "state": "invalid", "explain": "an object"}),
    ([None], {"field": "extras[0]", "state": "invalid", "explain": "an object"}),
    (["text", {"note": "a"}], {"field": "extras[0]", "state": "invalid",
                               "explain": "an object"}),
    ([[]], {"field": "extras[0]", "state": "invalid", "explain": "an object"}),
    ([{}], {"field": "extras[0].note", "state": "missing"}),
    ([{"note": "a"}, {"other": 1}], {"field": "extras[1].note", "state": "missing"}),
])
def test_a_subfield_of_a_list_item_names_the_item_by_one_rule(extras, error):
    """Through field() or an attribute, in a loop: the path names the deepest value that is
    there, an object's field (extras[0].note), or the item that is no object (extras[1])."""
    request = parse(json.dumps({"extras": extras}).encode())

    def by_field():
        for item in field(request, "extras", valid_type=list, default_value=[]):
            field(item, "note", is_required=True)

    def by_attribute():
        for item in parse(json.dumps({"extras": extras}).encode()).extras:
            field(item, "note", is_required=True)

    assert error_of(by_field) == error == error_of(by_attribute)


def test_optional_subfields_of_items_that_are_no_objects_read_as_absent():
    request = parse(b'{"extras": [5, null]}')
    assert [field(item, "note", default_value="-") for item in request.extras] == ["-", "-"]
    assert request.extras == [5, None] and json.loads(json.dumps(request)) == {"extras": [5, None]}


def test_an_absent_optional_object_reads_as_absent_fields():
    request = parse(b"{}")
    address = field(request, "address")
    assert field(address, "city", default_value="nowhere") == "nowhere"
    assert error_of(lambda: field(address, "city", is_required=True))["state"] == "missing"
