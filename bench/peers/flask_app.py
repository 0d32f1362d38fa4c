"""Flask 3 doing the JSON echo; served by ``gunicorn -k gevent -w 1 bench.peers.flask_app:app``.

Returning a dict is how Flask users answer JSON (Flask's provider encodes it).
"""

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v0/echo/read")
def echo() -> dict:
    """The request object back, plus one field."""
    data = request.get_json()
    data["server"] = "myproduct"
    return data
