"""The request context, hooks, CORS and the request id, in process (no socket): a Falcon-style
client calls the WSGI application directly."""

import logging

import pytest

from apiphant.client import Client
from apiphant.context import client_address, from_deployment, parse_addresses
from apiphant.cors import CorsError, policy

HANDLERS = {
    "api/v0/whoami.py": """
        def read(request, http):
            http.set_header("X-Handled", "yes")
            return {"client": http.client, "scheme": http.scheme, "id": http.request_id,
                    "agent": http.headers.get("user-agent"), "token": request.get("token")}
    """,
    "api/v0/plain.py": """
        import logging

        def read(request):
            logging.getLogger("shop").warning("plain read")
            return {"keys": sorted(request)}

        def create(request):
            return {"x": 1 / 0}
    """,
}

HOOKS = """
    from apiphant.errors import ApiError

    TOKEN = "s3cret"  # a real product reads it from its secrets: os.environ["API_TOKEN"]

    def before(request, http):
        if http.path.endswith("/boom/read"):
            raise RuntimeError("hook bug with the token s3cret")
        if http.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise ApiError(401, "missing or wrong bearer token")

    def after(request, http, response):
        http.set_header("X-After", "ran")
        response["after"] = True
"""


@pytest.fixture
def shop(make_product):
    return make_product({**HANDLERS, "api/v0/boom.py": "def read(request):\n    return {}\n"},
                        name="ctxshop")


def test_a_handler_with_a_second_parameter_gets_the_http_context(shop):
    client = Client(shop)
    result = client.post("whoami", "read", {"token": 1}, headers={"User-Agent": "t/1"})
    assert result.status == 200
    assert result.json == {"client": "127.0.0.1", "scheme": "http", "id": result.json["id"],
                           "agent": "t/1", "token": 1}
    assert result.headers["X-Handled"] == "yes"
    assert result.headers["X-Request-Id"] == result.json["id"] and len(result.json["id"]) == 32


def test_the_seeds_one_parameter_handler_is_unchanged(shop):
    result = Client(shop).post("plain", "read", {"a": 1})
    assert (result.status, result.json) == (200, {"keys": ["a"]})


def test_an_incoming_request_id_is_kept_a_bad_one_replaced(shop):
    client = Client(shop)
    kept = client.post("plain", "read", {}, headers={"X-Request-Id": "abc-123"})
    assert kept.headers["X-Request-Id"] == "abc-123"
    bad = client.post("plain", "read", {}, headers={"X-Request-Id": "x\x7fy"})
    assert len(bad.headers["X-Request-Id"]) == 32 and bad.headers["X-Request-Id"].isalnum()
    assert client.post("nothing", "read").headers["X-Request-Id"]  # errors carry it too


def test_log_lines_of_a_request_carry_its_id(shop, caplog):
    from apiphant.runtime.logs import RequestIdFilter

    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO):
        Client(shop).post("plain", "read", {}, headers={"X-Request-Id": "rid-1"})
    [record] = [r for r in caplog.records if r.getMessage() == "plain read"]
    assert record.request_id == "rid-1" and record.rid == " [rid-1]"


def test_json_log_lines(shop):
    import contextvars
    import json

    from apiphant.runtime.logs import JsonFormatter, RequestIdFilter

    record = logging.LogRecord("shop", logging.ERROR, __file__, 7, "it %s", ("failed",), None)
    # outside any request: a fresh context, whatever earlier tests answered in this thread
    contextvars.Context().run(RequestIdFilter().filter, record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "it failed" and line["level"] == "ERROR"
    assert "request_id" not in line  # outside a request


def test_before_rejects_a_missing_token_with_401_in_json(make_product):
    root = make_product({**HANDLERS, "api/hooks.py": HOOKS}, name="authshop")
    client = Client(root)
    result = client.post("plain", "read", {})
    assert (result.status, result.json) == (401, {"error": "missing or wrong bearer token"})
    assert "X-After" not in result.headers


def test_before_passes_a_good_token_and_after_sets_a_header(make_product):
    root = make_product({**HANDLERS, "api/hooks.py": HOOKS}, name="authshop2")
    result = Client(root).post("plain", "read", {"a": 1},
                               headers={"Authorization": "Bearer s3cret"})
    assert (result.status, result.json) == (200, {"keys": ["a"], "after": True})
    assert result.headers["X-After"] == "ran"


def test_a_hook_that_raises_is_a_500_that_leaks_nothing(make_product, caplog):
    root = make_product({**HANDLERS, "api/hooks.py": HOOKS,
                         "api/v0/boom.py": "def read(request):\n    return {}\n"},
                        name="authshop3")
    client = Client(root)
    result = client.post("boom", "read", {}, headers={"Authorization": "Bearer s3cret"})
    assert (result.status, result.json) == (500, {"error": "500 Internal Server Error"})
    assert b"s3cret" not in result.body and b"hook bug" not in result.body
    assert "hook bug" in caplog.text  # logged for the operator
    good = client.post("plain", "read", {}, headers={"Authorization": "Bearer s3cret"})
    assert good.status == 200  # the application goes on


def test_a_hook_with_the_wrong_signature_is_refused_at_start(make_product):
    from apiphant.app import create_app
    from apiphant.routing import RouteError

    root = make_product({"api/hooks.py": "def before(request):\n    pass\n"}, name="badhook")
    with pytest.raises(RouteError, match="before should be a function of 2 arguments"):
        create_app(root)


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),  # Nginx, trusted, names the client
        ("127.0.0.1", "1.1.1.1, 203.0.113.7", "203.0.113.7"),  # the left part is the client's
        ("198.51.100.1", "203.0.113.7", "198.51.100.1"),  # an untrusted peer: its own address
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "garbage", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7, 127.0.0.1", "203.0.113.7"),  # proxies skipped
    ],
)
def test_the_client_address_trusts_only_configured_proxies(peer, forwarded, client):
    environ = {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded}
    assert client_address(environ, parse_addresses(["127.0.0.1"])) == client


def test_without_trusted_proxies_x_forwarded_for_is_ignored():
    environ = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    assert client_address(environ, frozenset()) == "127.0.0.1"


#: The deploy's trusted proxies: loopback and a front's private address.
DEPLOYED = frozenset({"127.0.0.1", "10.0.0.1"})


@pytest.mark.parametrize(
    ("environ", "own"),
    [
        ({"REMOTE_ADDR": "127.0.0.1"}, True),  # supervise.py and fab status on the host
        ({"REMOTE_ADDR": "::1"}, True),
        ({"REMOTE_ADDR": "::ffff:127.0.0.1"}, True),
        ({"REMOTE_ADDR": "10.0.0.2", "apiphant.local_address": "10.0.0.2"}, True),  # its host
        ({"REMOTE_ADDR": "10.0.0.1"}, True),  # the front's Nginx asking for itself (rotation)
        # the smoke test through the front's loopback listener, on the front or another host
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}, True),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1"}, True),
        # anyone through the public name: Nginx names them
        ({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}, False),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.7"}, False),
        ({"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "10.0.0.2"}, False),
        ({"REMOTE_ADDR": "203.0.113.7"}, False),  # straight to a worker from outside
        ({"REMOTE_ADDR": "10.0.0.9", "apiphant.local_address": "10.0.0.2"}, False),  # a neighbour
        ({"REMOTE_ADDR": "garbage"}, False),
        ({}, False),
    ],
)
def test_the_deployment_is_the_host_itself_or_a_trusted_proxy_asking_for_itself(environ, own):
    assert from_deployment(environ, DEPLOYED) is own


def test_through_a_proxy_that_is_not_trusted_the_client_is_nobodys():
    """A local Nginx nobody named a trusted proxy: its requests come from loopback, for
    anyone outside; a header a proxy adds says so."""
    for header in ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP"):
        assert not from_deployment({"REMOTE_ADDR": "127.0.0.1", header: "127.0.0.1"},
                                   frozenset())  # fmt: skip
    assert from_deployment({"REMOTE_ADDR": "127.0.0.1"}, frozenset())


def test_health_names_product_and_release_only_to_the_deployment(monkeypatch):
    """Through the public name /health told anyone the product and the release id; now
    {"status": "ok"} only, and the whole answer to the host itself (the deploy's checks)."""
    import json
    import socket

    from apiphant.app import create_app
    from tests.servers import MYPRODUCT, server_in_thread

    monkeypatch.setenv("APIPHANT_RELEASE", "20261207T000000Z")
    full = {"status": "ok", "product": "myproduct", "release": "20261207T000000Z"}

    def health(port: int, forwarded: str | None) -> dict:
        extra = f"X-Forwarded-For: {forwarded}\r\n" if forwarded else ""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\n{extra}"
                         "Connection: close\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 "), data
        return json.loads(data.partition(b"\r\n\r\n")[2])

    app = create_app(MYPRODUCT, trusted_proxies=frozenset({"127.0.0.1"}))  # Nginx on the host
    with server_in_thread(app) as server:
        port = server.server_port
        assert health(port, None) == full  # the host itself, as supervise.py asks
        assert health(port, "127.0.0.1") == full  # the smoke test through Nginx
        assert health(port, "203.0.113.7") == {"status": "ok"}  # anyone through Nginx
        assert health(port, "127.0.0.1, 198.51.100.4") == {"status": "ok"}
    with server_in_thread(create_app(MYPRODUCT)) as server:  # an Nginx nobody said to trust
        assert health(server.server_port, "203.0.113.7") == {"status": "ok"}


# CORS

ORIGIN = "http://127.0.0.1:9999"


def cors_client(shop, **kwargs) -> Client:
    from apiphant.app import create_app

    return Client(create_app(shop, cors=policy([ORIGIN], **kwargs)))


def test_a_preflight_from_an_allowed_origin_gets_204_and_the_rules(shop):
    result = cors_client(shop, headers=["Authorization"]).request(
        "/api/v0/plain/read", method="OPTIONS",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"})
    assert result.status == 204 and result.body == b""
    assert result.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert result.headers["Access-Control-Allow-Methods"] == "POST"
    assert result.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization"
    assert result.headers["Access-Control-Max-Age"] == "600"
    assert result.headers["Vary"] == "Origin"


def test_answers_to_an_allowed_origin_carry_its_header_errors_too(shop):
    client = cors_client(shop)
    for target, action, status in (("plain", "read", 200), ("plain", "create", 500),
                                   ("nothing", "read", 404)):
        result = client.post(target, action, {}, headers={"Origin": ORIGIN})
        assert result.status == status
        assert result.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Access-Control-Allow-Credentials" not in result.headers


def test_an_unknown_origin_gets_no_cors_header_never_a_reflection(shop):
    client = cors_client(shop)
    stranger = "http://evil.example"
    preflight = client.request("/api/v0/plain/read", method="OPTIONS", headers={
        "Origin": stranger, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 403 and preflight.json == {"error": "CORS origin not allowed"}
    answer = client.post("plain", "read", {}, headers={"Origin": stranger})
    assert answer.status == 200
    assert not [h for h in answer.headers if h.lower().startswith("access-control")]
    assert not [h for h in preflight.headers if h.lower().startswith("access-control")]


def test_cors_is_off_by_default(shop):
    result = Client(shop).request("/api/v0/plain/read", method="OPTIONS",
                                  headers={"Origin": ORIGIN,
                                           "Access-Control-Request-Method": "POST"})
    assert result.status == 405 and "Access-Control-Allow-Origin" not in result.headers
    assert result.headers["Allow"] == "POST"


def test_with_cors_on_a_route_allows_options_too(shop):
    from apiphant.app import create_app

    client = Client(create_app(shop, cors=policy([ORIGIN])))
    visit = client.request("/api/v0/plain/read", method="GET")
    assert (visit.status, visit.json) == (405, {"error": "405 Method Not Allowed"})
    assert visit.headers["Allow"] == "POST, OPTIONS"
    plain = client.request("/api/v0/plain/read", method="OPTIONS")
    assert (plain.status, plain.body, plain.headers["Allow"]) == (204, b"", "POST, OPTIONS")
    preflight = client.request("/api/v0/plain/read", method="OPTIONS", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == "POST"


def test_any_origin_only_without_credentials(shop):
    from apiphant.app import create_app

    client = Client(create_app(shop, cors=policy(["*"])))
    result = client.post("plain", "read", {}, headers={"Origin": "http://a.example"})
    assert result.headers["Access-Control-Allow-Origin"] == "*"
    with pytest.raises(CorsError, match="credentials"):
        policy(["*"], credentials=True)
    with_credentials = Client(create_app(shop, cors=policy([ORIGIN], credentials=True)))
    answer = with_credentials.post("plain", "read", {}, headers={"Origin": ORIGIN})
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"


def test_with_cors_on_every_answer_says_vary_origin_once(shop):
    """A shared cache in front keys answers by URL: without ``Vary: Origin`` on every answer
    (no Origin, a refused one, an error) it could give one origin's answer to another, or an
    answer without CORS headers to an allowed origin. Through the live server, both of its
    paths (App.direct for answers without an Origin, WSGI for the others)."""
    import socket

    from apiphant.app import create_app
    from tests.servers import server_in_thread

    def answer(port: int, path: str, headers: str = "", method: str = "POST",
               body: bytes = b"{}") -> bytes:  # fmt: skip
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                         f"Content-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        return data.partition(b"\r\n\r\n")[0]

    stranger, allowed = "Origin: http://evil.example\r\n", f"Origin: {ORIGIN}\r\n"
    asks = "Access-Control-Request-Method: POST\r\n"
    cases = {
        "no Origin": ("/api/v0/plain/read", ""),
        "refused Origin": ("/api/v0/plain/read", stranger),
        "allowed Origin": ("/api/v0/plain/read", allowed),
        "500, no Origin": ("/api/v0/plain/create", ""),
        "500, refused Origin": ("/api/v0/plain/create", stranger),
        "404, no Origin": ("/api/v0/nothing/read", ""),
        "404, refused Origin": ("/api/v0/nothing/read", stranger),
        "with a header of the handler's": ("/api/v0/whoami/read", ""),
        "health": ("/health", ""),
    }
    app = create_app(shop, max_body=100, cors=policy([ORIGIN]))
    with server_in_thread(app) as server:
        port = server.server_port
        heads = {name: answer(port, *case) for name, case in cases.items()}
        heads["413, no Origin"] = answer(port, "/api/v0/plain/read", body=b"x" * 101)
        heads["405, no Origin"] = answer(port, "/api/v0/plain/read", method="GET", body=b"")
        for origin in (stranger, allowed):
            heads[f"preflight, {origin}"] = answer(port, "/api/v0/plain/read", origin + asks,
                                                   method="OPTIONS", body=b"")  # fmt: skip
    for name, head in heads.items():
        assert head.count(b"\r\nVary: Origin") == 1, (name, head)
    with server_in_thread(create_app(shop)) as server:  # CORS off: no Vary
        assert b"Vary" not in answer(server.server_port, "/api/v0/plain/read")


@pytest.mark.parametrize("origin", ["app.example.com", "https://a.example/path", "ftp://a.b",
                                    "https://a.example:99999x"])
def test_bad_origins_are_refused(origin):
    with pytest.raises(CorsError, match="expected an origin like"):
        policy([origin])


def test_a_live_worker_survives_a_failing_hook_and_logs_the_request_id(make_product, tmp_path):
    import requests

    from tests.servers import serving

    root = make_product({**HANDLERS, "api/hooks.py": HOOKS,
                         "api/v0/boom.py": "def read(request):\n    return {}\n"},
                        name="livehooks")
    good = {"Authorization": "Bearer s3cret"}
    with serving(root, tmp_path) as live:
        failed = requests.post(f"{live.url}/api/v0/boom/read", json={}, headers=good, timeout=5)
        assert (failed.status_code, failed.json()) == (500, {"error": "500 Internal Server Error"})
        assert b"s3cret" not in failed.content
        refused = requests.post(f"{live.url}/api/v0/plain/read", json={}, timeout=5)
        assert (refused.status_code, refused.json()) == (
            401, {"error": "missing or wrong bearer token"})
        answer = requests.post(f"{live.url}/api/v0/plain/read", json={}, headers=good, timeout=5)
        assert (answer.status_code, answer.json()) == (200, {"keys": [], "after": True})
        assert answer.headers["X-After"] == "ran"
        assert live.process.poll() is None
    request_id = failed.headers["X-Request-Id"]
    [line] = [x for x in live.log().splitlines() if "/api/v0/boom/read failed" in x]
    assert f"[{request_id}] /api/v0/boom/read failed" in line


def test_after_gets_an_empty_object_when_the_handler_returned_none(make_product):
    root = make_product({
        "api/v0/quiet.py": "def update(request):\n    return None\n",
        "api/hooks.py": "def before(request, http):\n    pass\n\n"
                        "def after(request, http, response):\n    return {**response, 'seen': 1}\n",
    }, name="quietshop")
    assert Client(root).post("quiet", "update", {}).json == {"seen": 1}
