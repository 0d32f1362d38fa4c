import copy
import pickle

import pytest

from apiphant.errors import ApiError
from apiphant.request import NOT_JSON_OBJECT, AttrDict, parse


def test_attribute_access_reads_and_writes_keys():
    request = parse(b'{"hello": "world", "nested": {"a": {"b": 1}}, "items": [{"id": 1}]}')
    assert request.hello == "world"
    assert request.nested.a.b == 1
    assert request["items"][0].id == 1
    request.added = 5
    assert request["added"] == 5
    del request.added
    assert "added" not in request


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


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b'"text"',
        b"42",
        b"null",
        b"{not json",
        b"\xff\xfe{}",
        b'{"a": "\xc3\x28"}',
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": ' + b"9" * 5000 + b"}",
        '{"a": 1}'.encode("utf-16"),
    ],
)
def test_anything_but_a_utf8_json_object_is_400(body):
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.body == {"error": NOT_JSON_OBJECT}


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
