import pytest

from apiphant.errors import ApiError, status_line


@pytest.mark.parametrize(
    ("code", "line"),
    [(404, "404 Not Found"), (501, "501 Not Implemented"), (429, "429 Too Many Requests"),
     (418, "418 I'm a Teapot"), (599, "599 Unknown")],
)
def test_status_lines_use_standard_reason_phrases(code, line):
    assert status_line(code).lower() == line.lower()


def test_empty_error_body_is_the_status_line():
    assert ApiError(404).body == {"error": "404 Not Found"}
    assert ApiError(400, "").body == {"error": "400 Bad Request"}
    assert ApiError(400, {}).body == {"error": "400 Bad Request"}


def test_error_body_is_kept_as_given():
    assert ApiError(409, {"conflict": "exists"}).body == {"error": {"conflict": "exists"}}
    assert ApiError(400, 0).body == {"error": 0}


def test_seed_name_status_code_still_works():
    assert ApiError(403).status_code == 403


@pytest.mark.parametrize("status", [200, 302, 600, True, "404", 40.4])
def test_a_status_that_is_not_an_error_is_refused_at_raise_time(status):
    with pytest.raises(ValueError):
        ApiError(status)
