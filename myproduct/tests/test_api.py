"""myproduct's unit tests: in process, no server (`pytest tests`). The live smoke test
against a server or a deployment is test.py (`./test.sh [URL]`)."""

from pathlib import Path

from apiphant.client import Client

client = Client(Path(__file__).resolve().parent.parent)


def test_echo_answers_the_request_signed():
    result = client.post("echo", "read", {"hello": "world"})
    assert result.status == 200
    assert result.json == {"hello": "world", "server": "myproduct"}


def test_settings_refuse_an_unknown_theme():
    result = client.post("users/settings", "update", {"user_id": 7, "settings": {"theme": "x"}})
    assert result.status == 400
    assert result.json["error"]["field"] == "settings.theme"
