"""Unexpected errors reach Sentry through sentry-sdk's real transport, to a local endpoint."""

import requests

from tests.sentry_capture import capture_sentry
from tests.servers import SELFCHECK, serving


def test_a_500_is_reported_with_its_route_and_flushed_at_shutdown(tmp_path):
    with capture_sentry() as sentry:
        with serving(SELFCHECK, tmp_path, env=sentry.env()) as live:
            answer = requests.post(f"{live.url}/api/v0/self/create", json={"test": "1/0"})
            assert answer.status_code == 500
            assert requests.post(f"{live.url}/api/v0/self/create", json=[]).status_code == 400
            assert live.stop() == 0  # right away: the event must be flushed on the way out
        [event] = sentry.wait_for(1, timeout=10)
        assert event["tags"]["route"] == "/api/v0/self/create"
        assert event["tags"]["component"] == "api"
        [exception] = event["exception"]["values"]
        assert exception["type"] == "ZeroDivisionError"
        assert len(sentry.events()) == 1  # the 400 is the client's fault: not reported


def test_without_a_dsn_nothing_is_sent(tmp_path, monkeypatch):
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    with capture_sentry() as sentry:
        with serving(SELFCHECK, tmp_path) as live:
            requests.post(f"{live.url}/api/v0/self/create", json={"test": "1/0"})
        assert sentry.envelopes() == []


#: A handler that raises with the client's secrets in its request and in its own locals:
#: nested, in lists, under keys Sentry's own default scrubber does not know (card, db_password).
#: (No secret in its source: Sentry sends source lines around each frame.)
LEAKY = """
    def create(request):
        db_password = request.password
        profile = {"name": request.user + "-in-locals", "api-token": request.profile}
        raise RuntimeError("the handler failed")
"""
SECRETS = {
    "user": "alice",
    "password": "hunter2-0003",
    "card": "4111111111110004",
    "profile": {"session_token": "tok-0005", "nested": {"Client-Secret": "sec-0006"}},
    "cards": [{"number": "4111111111110007"}],
    "items": [{"note": "fine"}, {"password": "pw-0008"}],
    "ssn": "078-05-0009",
}
HEADERS = {"Authorization": "Bearer bear-0010", "Cookie": "sid=cookie-0011"}


def _leak(make_product, tmp_path, env: dict[str, str]) -> tuple[bytes, dict]:
    """The raw envelopes and the one event of a handler failure after a request with secrets."""
    product = make_product({"api/v0/leak.py": LEAKY}, name="leaky")
    with capture_sentry() as sentry:
        with serving(product, tmp_path, env={**sentry.env(), **env}) as live:
            answer = requests.post(f"{live.url}/api/v0/leak/create", json=SECRETS, headers=HEADERS)
            assert answer.status_code == 500
            assert live.stop() == 0
        [event] = sentry.wait_for(1, timeout=10)
        raw = b"".join(item.payload for item in sentry.items())
    return raw, event


def _secret_values() -> list[str]:
    return ["hunter2-0003", "4111111111110004", "tok-0005",
            "sec-0006", "4111111111110007", "pw-0008", "bear-0010", "cookie-0011"]  # fmt: skip


def test_a_failure_sends_no_request_body_headers_or_locals_by_default(make_product, tmp_path):
    raw, event = _leak(make_product, tmp_path, {})
    for value in [*_secret_values(), "alice", "078-05-0009"]:
        assert value.encode() not in raw, value
    [exception] = event["exception"]["values"]
    assert exception["value"] == "the handler failed"  # the event itself is whole
    frames = exception["stacktrace"]["frames"]
    assert frames and not any("vars" in frame for frame in frames)


def test_locals_on_request_are_sent_scrubbed_by_key_at_any_depth(make_product, tmp_path):
    env = {"APIPHANT_SENTRY_LOCALS": "true", "APIPHANT_SENTRY_SCRUB": "ssn"}
    raw, event = _leak(make_product, tmp_path, env)
    assert b"alice-in-locals" in raw and b"fine" in raw  # the locals are there
    for value in [*_secret_values(), "078-05-0009"]:
        assert value.encode() not in raw, value
    [exception] = event["exception"]["values"]
    [handler] = [f for f in exception["stacktrace"]["frames"] if f["function"] == "create"]
    assert handler["vars"]["db_password"] == "[Filtered]"
