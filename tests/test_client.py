"""The in-process test client: what a product's tests read of an answer."""

from apiphant.client import Client
from tests.servers import MYPRODUCT


def test_result_headers_are_case_insensitive_like_the_handlers():
    result = Client(MYPRODUCT).post("echo", "read", {"hello": "world"})
    assert result.headers.get("content-type") == "application/json"
    assert result.headers["CONTENT-LENGTH"] == str(len(result.body))
    assert "x-request-id" in result.headers and "X-Nothing" not in result.headers
    assert list(result.headers)[:3] == ["Content-Type", "X-Content-Type-Options",
                                        "Content-Length"]  # the names as sent
    assert dict(result.headers)["Content-Type"] == "application/json"


def test_the_handler_reads_request_headers_case_insensitively_too(make_product):
    root = make_product({"api/v0/tag.py": """
        def read(request, http):
            return {"tag": http.headers["x-tag"], "type": http.headers.get("CONTENT-TYPE"),
                    "has": "X-TAG" in http.headers}
    """}, name="tagged")
    result = Client(root).post("tag", "read", {}, headers={"X-Tag": "t1"})
    assert result.json == {"tag": "t1", "type": "application/json", "has": True}
