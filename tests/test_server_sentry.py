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
