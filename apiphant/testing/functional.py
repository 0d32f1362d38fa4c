"""Functional tests against a live server, in apiphant 0.2's one-line style.

    from apiphant.test import test   # apiphant 0.2's path: this module
    test('echo', 'read', {"hello": "world"}, 200, {"hello": "world", "server": "myproduct"})

prints ``POST http://127.0.0.1:8888/api/v0/echo/read {"hello": "world"} --> 200 {...}``,
the status and body that came back.
The server is 127.0.0.1:8888 and the version v0 unless ``config`` or the
environment (APIPHANT_URL, APIPHANT_HOST, APIPHANT_PORT, APIPHANT_VERSION)
says otherwise, so one test file checks a laptop and a deployment alike.
"""

import json
import sys
from typing import Any

import requests

from apiphant.request import AttrDict
from apiphant.settings import SettingError, env_value, schema

#: The port test.sh and test() use when nothing says otherwise (apiphant 0.2's).
DEFAULT_PORT = schema.DEFAULT_TEST_PORT


def _from_environment() -> AttrDict:
    """The server to test, from the environment; a bad value is one line and exit status 2."""
    try:
        return AttrDict({name: env_value(name) for name in
                         ("url", "host", "port", "version", "timeout")})  # fmt: skip
    except SettingError as error:
        print(f"apiphant.test: {error}", file=sys.stderr)
        raise SystemExit(2) from None


config = _from_environment()
counts = AttrDict(passed=0)
_session = requests.Session()


def base_url() -> str:
    """``config.url`` when set (a deployment), else ``http://host:port``."""
    if config.url:
        return config.url.rstrip("/")
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}"


def url(target: str, action: str) -> str:
    return f"{base_url()}/api/{config.version}/{target}/{action}"


def test(
    target: str,
    action: str,
    request_json: Any,
    status_code: int,
    response_json: Any,
    method: str = "POST",
) -> requests.Response:
    """Send one request and assert its status and JSON body; print apiphant 0.2's line.

    ``request_json`` None sends no body; bytes are sent as they are (to
    test bad input); anything else is sent as JSON.
    """
    if request_json is None or isinstance(request_json, bytes):
        data, shown = request_json, request_json
    else:
        data = shown = json.dumps(request_json)
    address = url(target, action)
    try:
        response = _session.request(method, address, data=data, timeout=config.timeout)
    except requests.ConnectionError:
        raise SystemExit(f"cannot reach {base_url()}: is the server running?") from None
    try:
        received: Any = response.json()
    except ValueError:
        received = response.text
    # What came back, not what was expected: the line is a record of the exchange.
    print(f"{method} {address} {shown} --> {response.status_code} {received}", flush=True)
    if response.status_code != status_code or received != response_json:
        raise AssertionError(
            f"{method} {address} {shown}\n"
            f"  expected: {status_code} {response_json!r}\n"
            f"  received: {response.status_code} {received!r}"
        )
    counts.passed += 1
    return response


#: Not a test itself: pytest would collect ``test`` from every module that imports it.
test.__test__ = False
