"""The scrubber every Sentry event passes through (apiphant.runtime.reporting.scrub): pure."""

import pytest

from apiphant.runtime import reporting
from apiphant.runtime.reporting import FILTERED, scrub, scrubbed_keys
from apiphant.settings import SettingError


def test_keys_are_matched_by_part_case_and_dash_insensitively_at_any_depth():
    event = {
        "request": {"User": "a", "DB_Password": "x", "x-api-key": "y"},
        "frames": [{"vars": {"cards": [{"number": "4111"}], "note": ["ok", {"Cookie": "c"}]}}],
        "extra": ({"authorization": "Bearer t", "csrf_token": "t"},),
    }
    assert scrub(event) == {
        "request": {"User": "a", "DB_Password": FILTERED, "x-api-key": FILTERED},
        "frames": [{"vars": {"cards": FILTERED, "note": ["ok", {"Cookie": FILTERED}]}}],
        "extra": [{"authorization": FILTERED, "csrf_token": FILTERED}],
    }
    assert event["request"]["DB_Password"] == "x"  # a copy: the caller's event is untouched


def test_non_string_keys_and_plain_values_pass():
    assert scrub({1: "one", None: [2, 3.5, None], "n": "password"}) == {
        1: "one", None: [2, 3.5, None], "n": "password"}  # fmt: skip
    assert scrub("a password") == "a password"  # values are never guessed at, keys are


def test_the_product_adds_its_own_keys():
    assert scrubbed_keys({}) == reporting.SCRUBBED
    extra = scrubbed_keys({"APIPHANT_SENTRY_SCRUB": "ssn, iban"})
    assert extra[-2:] == ("ssn", "iban")
    assert scrub({"user_ssn": "1", "IBAN": "2", "name": "3"}, extra) == {
        "user_ssn": FILTERED, "IBAN": FILTERED, "name": "3"}  # fmt: skip


def test_a_bad_locals_setting_is_one_line():
    with pytest.raises(SettingError, match="APIPHANT_SENTRY_LOCALS: expected true or false"):
        reporting.init("api", {"SENTRY_DSN": "http://k@127.0.0.1:9/1",
                               "APIPHANT_SENTRY_LOCALS": "maybe"})  # fmt: skip
