"""The echo target: POST /api/v0/echo/read answers the request back, signed by the server."""

from apiphant.request import Request


def read(request: Request) -> dict:
    response = request.copy()
    response.server = "myproduct"
    return response
