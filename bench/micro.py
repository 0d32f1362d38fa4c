"""Micro-benchmarks of two choices of the server, measured in one run.

    python -m bench.micro

- The request parser: llhttp through httptools (apiphant.http.parser, what the
  server uses) against the pywsgi-based parsing it replaced (copied below from
  apiphant/server.py before its own HTTP parser) and against h11, on the echo request.
- JSON: the standard library (what apiphant uses) against orjson, decoding the
  echo body into AttrDicts and encoding the answer. orjson cannot keep the
  seed's output bytes (``", "`` and ``": "`` separators, ASCII escapes), so only
  its decoding could be used.

Prints a markdown table of microseconds per call (best of 5 repeats).
"""

import io
import json
import re
import timeit
from collections.abc import Callable

from apiphant.http.parser import RequestParser
from apiphant.request import AttrDict, parse

REQUEST = (
    b"POST /api/v0/echo/read HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
    b"Content-Type: application/json\r\nContent-Length: 18\r\n\r\n"
    b'{"hello": "world"}'
)
ANSWER = {"hello": "world", "server": "myproduct"}
NESTED = json.dumps(
    {"user": {"id": 7, "name": "Ada", "tags": ["a", "b"], "address": {"city": "Paris"}},
     "items": [{"id": i, "qty": i * 2, "note": "x" * 20} for i in range(20)]}
).encode()  # fmt: skip

# --- the parser apiphant/server.py had on pywsgi (its fast path) -------------------------

_PLAIN_HEADERS = re.compile(r"(?:[!-9;-~]+:[^\r\n]*\r?\n)*\r?\n")
_HEADER_FIELD = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*)\r?\n")


def pywsgi_era(data: bytes) -> tuple:
    from gevent.pywsgi import OldMessage  # the old parser's message class, as it used it

    rfile = io.BytesIO(data)
    words = rfile.readline(8192).decode("latin-1").rstrip().split()
    lines = []
    while True:
        line = rfile.readline(65537)
        lines.append(line)
        if line in (b"\r\n", b"\n", b""):
            break
    text = b"".join(lines).decode("iso-8859-1")
    message = OldMessage()
    if _PLAIN_HEADERS.fullmatch(text):
        message._headers = _HEADER_FIELD.findall(text)
    for _, value in message._headers:
        if "\n" in value or "\r" in value or "\x00" in value:
            raise ValueError
    lengths = message.get_all("content-length")
    message.get_all("transfer-encoding")
    length = int(lengths[0])
    return words, message, rfile.read(length)


def llhttp(data: bytes) -> tuple:
    parser = RequestParser()
    parser.feed(data)
    return parser.ready[0]


def h11_parse(data: bytes) -> tuple:
    import h11

    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    return conn.next_event(), conn.next_event(), conn.next_event()


# --- JSON ---------------------------------------------------------------------------------


def _attrdicts(value):
    if isinstance(value, dict):
        return AttrDict({k: _attrdicts(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_attrdicts(v) for v in value]
    return value


def measure(call: Callable[[], object], number: int = 20000) -> float:
    """Microseconds per call, best of 5."""
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def main() -> int:
    import orjson

    encode = json.JSONEncoder(allow_nan=False).encode
    rows = [
        ("parse the echo request: llhttp (httptools), apiphant's",
         measure(lambda: llhttp(REQUEST))),
        ("parse the echo request: pywsgi-era parser (apiphant's before llhttp)",
         measure(lambda: pywsgi_era(REQUEST))),
        ("parse the echo request: h11", measure(lambda: h11_parse(REQUEST))),
        ("decode the echo body into AttrDicts: stdlib json, apiphant's",
         measure(lambda: parse(b'{"hello": "world"}'))),
        ("decode the echo body into AttrDicts: orjson",
         measure(lambda: _attrdicts(orjson.loads(b'{"hello": "world"}')))),
        ("decode a nested 1.4 KB body into AttrDicts: stdlib json", measure(lambda: parse(NESTED),
                                                                          2000)),
        ("decode a nested 1.4 KB body into AttrDicts: orjson",
         measure(lambda: _attrdicts(orjson.loads(NESTED)), 2000)),
        ("encode the echo answer: stdlib json (the seed's bytes)",
         measure(lambda: encode(ANSWER).encode())),
        ("encode the echo answer: orjson (other bytes: no spaces)",
         measure(lambda: orjson.dumps(ANSWER))),
    ]  # fmt: skip
    print("| what | µs per call |\n|---|---|")
    for what, micros in rows:
        print(f"| {what} | {micros:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
