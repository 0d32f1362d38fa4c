"""Falcon 4 doing the JSON echo, served by the same pywsgi server as the bare app.

Falcon's own media handling (``get_media`` and ``resp.media``), as its users
write it; run by ``python -m bench.peers.bare_pywsgi HOST:PORT --app falcon``.
"""

import falcon


class Echo:
    """POST /api/v0/echo/read: the request object back, plus one field."""

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        request = req.get_media()
        request["server"] = "myproduct"
        resp.media = request


app = falcon.App()
app.add_route("/api/v0/echo/read", Echo())
