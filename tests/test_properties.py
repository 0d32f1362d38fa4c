"""Properties over request parsing and field(): any input is a request or a 4xx, never a 500."""

import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apiphant.client import Client
from apiphant.errors import ApiError
from apiphant.request import AttrDict, parse
from apiphant.validation import BadRequest, field
from tests.servers import MYPRODUCT

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
client = Client(MYPRODUCT)


@given(st.binary(max_size=2000))
def test_any_bytes_parse_to_an_object_or_a_400(body):
    try:
        assert isinstance(parse(body), AttrDict)
    except ApiError as error:
        assert error.status == 400


@given(json_values)
def test_any_json_value_is_echoed_if_an_object_else_400(value):
    result = client.post("echo", "read", value if value is not None else b"null")
    if isinstance(value, dict):
        assert result.status == 200
        assert result.json == {**value, "server": "myproduct"}
    else:
        assert result.status == 400


@given(
    st.binary(max_size=300),
    st.sampled_from(["/api/v0/echo/read", "/api/v0/users/settings/read",
                     "/api/v0/users/settings/update"]),
)
def test_any_body_to_any_route_is_never_a_500(body, path):
    result = client.request(path, body)
    assert result.status < 500
    assert "error" in result.json or result.status == 200


options = st.fixed_dictionaries(
    {},
    optional={
        "is_required": st.booleans(),
        "default_value": json_values,
        "valid_value": json_values
        | st.sets(st.integers() | st.text(max_size=3), max_size=3)
        | st.just(lambda value: value > 0),
        "valid_type": st.sampled_from([int, float, str, bool, dict, list, (int, str)]),
        "valid_length": st.integers(-1, 5),
        "max_length": st.integers(-1, 5),
        "explain": json_values,
    },
)


@given(
    st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    st.text(max_size=3) | st.integers(-2, 5),
    options,
)
def test_field_returns_or_raises_a_400_and_nothing_else(request, name, kwargs):
    request = parse(json.dumps(request).encode())
    try:
        field(request, name, **kwargs)
    except BadRequest as error:
        assert error.status == 400
        assert error.body["error"]["state"] in ("missing", "invalid")


header_names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)
header_values = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=40)


@pytest.fixture(scope="module")
def worker(strict_worker):
    return strict_worker


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(header_names, header_values), max_size=6), st.binary(max_size=64))
def test_any_headers_and_body_get_an_answer_below_500_from_a_live_worker(worker, headers, body):
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = (
        f"POST /api/v0/echo/read HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1") + body
    with socket.create_connection((worker.host, worker.port), timeout=5) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert 200 <= status < 500 or status == 501, answer[:200]  # 501: a Transfer-Encoding we lack
    assert worker.process.poll() is None
