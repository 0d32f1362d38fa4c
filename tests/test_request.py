import copy
import pickle

import pytest

from apiphant.errors import ApiError
from apiphant.request import (
    DEFAULT_MAX_JSON_VALUES,
    NOT_JSON_OBJECT,
    AttrDict,
    count_values,
    parse,
)


def test_attribute_access_reads_and_writes_keys():
    request = parse(b'{"hello": "world", "nested": {"a": {"b": 1}}, "items": [{"id": 1}]}')
    assert request.hello == "world"
    assert request.nested.a.b == 1
    assert request["items"][0].id == 1
    request.added = 5
    assert request["added"] == 5
    del request.added
    assert "added" not in request


def test_a_missing_attribute_is_the_400_field_gives_naming_its_path():
    request = parse(b'{"address": {"geo": {}}}')
    for read, path in ((lambda: request.name, "name"), (lambda: request.address.city,
                       "address.city"), (lambda: request.address.geo.lat, "address.geo.lat")):
        with pytest.raises(ApiError) as caught:
            read()
        assert (caught.value.status, caught.value.body) == (400, {"error": {
            "field": path, "state": "missing"}})
        assert isinstance(caught.value, AttributeError)  # getattr's default, hasattr


def test_dunder_private_and_dict_names_stay_plain_python():
    request = parse(b'{"items": [1], "copy": 2}')
    for probe in ("__html__", "__json__", "_private", "__deepcopy__"):
        assert not hasattr(request, probe)
        with pytest.raises(AttributeError) as caught:
            getattr(request, probe)
        assert not isinstance(caught.value, ApiError)
    assert request.get("missing", 5) == 5 and list(request.items()) == [("items", [1]),
                                                                         ("copy", 2)]
    assert callable(request.copy) and request["copy"] == 2


def test_missing_attribute_is_attribute_error_so_getattr_defaults_work():
    request = parse(b"{}")
    with pytest.raises(AttributeError):
        _ = request.nothing
    assert getattr(request, "nothing", 7) == 7
    assert not hasattr(request, "nothing")


def test_copy_keeps_attribute_access_and_is_shallow():
    request = parse(b'{"a": {"b": 1}}')
    clone = request.copy()
    assert isinstance(clone, AttrDict)
    clone.c = 2
    assert "c" not in request
    assert clone.a is request.a


def test_deepcopy_and_pickle_keep_the_type():
    request = parse(b'{"a": {"b": [1, 2]}}')
    assert copy.deepcopy(request).a.b == [1, 2]
    again = pickle.loads(pickle.dumps(request))
    assert isinstance(again, AttrDict) and again.a.b == [1, 2]


def test_empty_body_is_an_empty_object():
    assert parse(b"") == {}


BAD_BODIES = {
    b"[1, 2]": "got an array",
    b'"text"': "got a string",
    b"42": "got a number",
    b"true": "got a boolean",
    b"null": "got null",
    b"{not json": "invalid JSON at line 1, column 2: Expecting property name enclosed in "
                  "double quotes",
    b'{"a": 1,\n "b" 2}': "invalid JSON at line 2, column 6: Expecting ':' delimiter",
    b"a=1&b=2": "invalid JSON at line 1, column 1: Expecting value",
    b"\xff\xfe{}": "not UTF-8 (byte 0xff at offset 0)",
    b'{"a": "\xc3\x28"}': "not UTF-8 (byte 0xc3 at offset 7)",
    '{"a": 1}'.encode("utf-16"): "not UTF-8 (byte 0xff at offset 0)",
    b'{"a": NaN}': "NaN is not JSON",
    b'{"a": Infinity}': "Infinity is not JSON",
    b'{"q": 1e400}': "number 1e400 is out of range",
    b'{"q": -1e400}': "number -1e400 is out of range",
    b'{"a": ' + b"9" * 5000 + b"}": "a number is out of range (integers have at most 4300 "
                                    "digits)",
    b"[" * 100_000 + b"]" * 100_000: "nested too deep",
}  # fmt: skip


@pytest.mark.parametrize("body", list(BAD_BODIES))
def test_anything_but_a_utf8_json_object_is_400_saying_what_is_wrong(body):
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == 400
    # apiphant 0.2's words first, for clients that match them
    assert caught.value.body == {"error": f"{NOT_JSON_OBJECT}: {BAD_BODIES[body]}"}


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "Multipart/Form-Data; boundary=x"])
def test_a_form_body_is_told_json_is_expected(content_type):
    from apiphant.client import Client
    from tests.servers import MYPRODUCT

    client = Client(MYPRODUCT)
    form = client.request("/api/v0/echo/read", b"a=1&b=2", headers={"Content-Type": content_type})
    media = content_type.partition(";")[0].lower()
    assert (form.status, form.json) == (400, {"error": f"{NOT_JSON_OBJECT}: got a form ({media}); "
                                              "send a JSON object with Content-Type: "
                                              "application/json"})
    # curl -d sends JSON as a form: it still parses
    json_as_form = client.request("/api/v0/echo/read", b'{"a": 1}',
                                  headers={"Content-Type": content_type})
    assert json_as_form.json == {"a": 1, "server": "myproduct"}


def test_big_but_sane_numbers_and_unicode_are_kept():
    request = parse('{"n": 123456789012345678901234567890, "s": "héllo \\u2603"}'.encode())
    assert request.n == 123456789012345678901234567890
    assert request.s == "héllo ☃"


def test_duplicate_keys_keep_the_last_value_as_json_does():
    assert parse(b'{"a": 1, "a": 2}').a == 2


def test_dict_methods_win_over_keys_of_the_same_name():
    request = parse(b'{"items": 3}')
    assert callable(request.items)
    assert request["items"] == 3


def test_values_are_counted_fast_as_commas_and_opening_brackets():
    assert count_values(b"{}") == 2  # an empty container counts 2
    assert count_values(b'{"a": 1, "b": [1, 2, {"c": null}]}') == 7
    assert count_values(b'{"a": "x, y [z"}') == 4  # inside strings too: the price of speed


def test_a_body_of_many_small_values_is_413_before_it_is_parsed():
    """A 1 MiB body (within the default max_body) of small objects held 27 MiB and blocked
    the worker's loop 80 to 200 ms while parsed; it is refused first, with the limit."""
    many = b'{"a": [' + b",".join([b"{}"] * 349_000) + b"]}"
    with pytest.raises(ApiError) as caught:
        parse(many, DEFAULT_MAX_JSON_VALUES)
    assert caught.value.status == 413
    assert caught.value.body == {"error": "Request content has more than 100000 JSON values"}
    assert len(parse(many)["a"]) == 349_000  # no limit: as before
    def numbers(n: int) -> bytes:  # n + 2 values: the object, the list, n numbers
        return b'{"a": [' + b",".join([b"1"] * n) + b"]}"

    assert len(parse(numbers(99_998), 100_000)["a"]) == 99_998  # 100,000 values exactly
    with pytest.raises(ApiError):
        parse(numbers(99_999), 100_000)


def test_max_json_values_from_the_command_line(tmp_path):
    import requests

    from tests.servers import MYPRODUCT, serving

    with serving(MYPRODUCT, tmp_path, "--max-json-values", "20") as live:
        url = f"{live.url}/api/v0/echo/read"
        fine = requests.post(url, json={"a": list(range(18))})  # 20 values
        assert fine.status_code == 200
        refused = requests.post(url, json={"a": list(range(19))})
        assert (refused.status_code, refused.json()) == (
            413, {"error": "Request content has more than 20 JSON values"})  # fmt: skip
        assert requests.post(url, json={"ok": 1}).status_code == 200  # kept alive, serving
