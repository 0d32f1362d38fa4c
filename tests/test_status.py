"""A handler's success status: ``@status(201)`` on an action, ``http.status`` per request;
one rule (``errors.success_status``) for both, through the WSGI path (the in-process
client) and the server's direct path alike. apiphant 0.2's handlers keep their 200."""

import pytest
import requests

from apiphant import status
from apiphant.client import Client
from apiphant.errors import success_status
from apiphant.routing import RouteError
from tests.servers import serving

FILES = {
    "api/v0/items.py": """
        from apiphant import ApiError, status

        @status(201)
        def create(request):
            if request.get("refuse"):
                raise ApiError(409, "taken")  # an error keeps its own status
            return {"id": 1}

        def read(request):  # apiphant 0.2's handler: 200, as ever
            return {"id": 1}

        def update(request, http):
            http.status = request.get("status", 200)  # decided per request
            return {"updated": True}

        @status(202)
        def delete(request, http):
            if request.get("now"):
                http.status = 200  # the request's status wins over the action's
    """,
}


@pytest.mark.parametrize("code, line", [(200, "200 OK"), (201, "201 Created"),
                                        (202, "202 Accepted"), (299, "299 Unknown")])  # fmt: skip
def test_a_success_status_is_a_2xx_with_a_body(code, line) -> None:
    assert success_status(code) == line


@pytest.mark.parametrize("code", [204, 205, 199, 300, 404, 500, "201", 201.0, True, None])
def test_anything_else_is_refused_naming_it(code) -> None:
    with pytest.raises(ValueError, match=repr(code).replace("(", r"\(").replace(".", r"\.")):
        success_status(code)
    with pytest.raises(ValueError):
        status(code)


def _answers(post) -> list[tuple[int, object]]:
    return [post("create", {}), post("create", {"refuse": True}), post("read", {}),
            post("update", {}), post("update", {"status": 201}), post("update", {"status": 204}),
            post("delete", {}), post("delete", {"now": True})]  # fmt: skip


EXPECTED = [
    (201, {"id": 1}), (409, {"error": "taken"}), (200, {"id": 1}),
    (200, {"updated": True}), (201, {"updated": True}),
    (500, {"error": "500 Internal Server Error"}),  # 204 carries no body: the handler's bug
    (202, {}), (200, {}),
]  # fmt: skip


def test_the_wsgi_path_answers_the_actions_status(make_product) -> None:
    client = Client(make_product(FILES, name="statuses"))

    def post(action, body):
        answer = client.post("items", action, body)
        return answer.status, answer.json

    assert _answers(post) == EXPECTED


def test_the_direct_path_answers_the_same(make_product, tmp_path) -> None:
    product = make_product(FILES, name="statuses_live")
    with serving(product, tmp_path) as live:
        def post(action, body):
            answer = requests.post(f"{live.url}/api/v0/items/{action}", json=body, timeout=10)
            return answer.status_code, answer.json()

        assert _answers(post) == EXPECTED
        assert "status 204 has no body" in live.log()


def test_a_bad_status_on_an_action_stops_the_start_naming_the_file(make_product) -> None:
    product = make_product({"api/v0/bad.py": """
        from apiphant import status

        @status(404)
        def create(request):
            return {}
    """}, name="badstatus")  # fmt: skip
    with pytest.raises(RouteError, match=r"bad\.py.*from 200 to 299, got 404"):
        Client(product)
