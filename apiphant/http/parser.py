"""HTTP/1.1 request parsing: bytes in, requests out. No socket, no gevent, no clock.

The tokenizing is llhttp's (through httptools, the parser uvicorn uses), in
its strict mode: it refuses bare LF line ends, folded and malformed header
lines, control characters in values, bad or duplicate Content-Lengths,
Content-Length with Transfer-Encoding, and bad chunk sizes. On top of that,
the rules that keep one connection from desynchronising from a proxy in front
(request smuggling) and that bound what one request may hold:

- a Transfer-Encoding other than ``chunked`` is 501, two of them are 400;
- Transfer-Encoding in an HTTP/1.0 request is 400: RFC 9112 section 6.1 says to treat
  its framing as faulty (HTTP/1.0 has no chunked coding, so a proxy in front may have
  framed the body differently), and Nginx refuses it the same way;
- an HTTP/1.1 request with no Host, and any request with two, is 400 (RFC 9112
  section 3.2);
- a request target over ``MAX_REQUEST_LINE`` is 414;
- a header line over ``MAX_HEADER_LINE``, more than ``MAX_HEADERS`` lines, or a
  head still unfinished after ``MAX_HEAD`` bytes is 431;
- HTTP versions other than 1.0 and 1.1 are 505 (400 with no version at all).

bench/micro.py measures this parser against the pywsgi-based one it
replaced and against h11, on the same request heads.
"""

import re
from collections import deque

import httptools

#: The longest request target (pywsgi's and Nginx's order of size): longer is 414.
MAX_REQUEST_LINE = 8192
#: http.client's limits: a longer header line, or more lines, is refused with 431.
MAX_HEADER_LINE = 65536
MAX_HEADERS = 100
#: A head still unfinished after this many bytes read is refused with 431, whatever its
#: lines: it bounds what a slow client can make the parser hold. Counted in whole reads,
#: so heads up to MAX_HEADER_LINE always pass.
MAX_HEAD = 2 * MAX_HEADER_LINE
#: A well-formed request line: a method llhttp does not know in it is 501, not 400.
_REQUEST_LINE = re.compile(rb"(?:\r\n)*[!#$%&'*+.^_`|~0-9A-Za-z-]+ [!-~]+ HTTP/1\.[01]\r\n")


class ProtocolError(ValueError):
    """A request that breaks HTTP: answered with ``status``, and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Request:
    """One request as parsed: its head, and its body as it arrives.

    ``body`` holds the bytes received and not yet read by the application;
    ``received`` counts every body byte, read or not.
    """

    __slots__ = (
        "method",
        "target",
        "version",
        "headers",
        "content_length",
        "chunked",
        "keep_alive",
        "expect_continue",
        "upgrade",
        "request_id",
        "origin",
        "body",
        "received",
        "complete",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = ""
        self.headers: list[tuple[str, str]] = []  # (name, value) as sent, latin-1
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = False
        self.expect_continue = False
        self.upgrade = False
        #: X-Request-Id (repeated ones joined with ",", as the WSGI environ joins them) and
        #: whether an Origin came: what App.direct asks of every request, noted as parsed.
        self.request_id: str | None = None
        self.origin = False
        self.body = bytearray()
        self.received = 0
        self.complete = False

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} HTTP/{self.version}"

    def unread(self) -> int | None:
        """How many body bytes the application has not read (buffered or still to arrive);
        None when a chunked body is not complete."""
        if self.complete:
            return len(self.body)
        if self.content_length is None:
            return None
        return self.content_length - self.received + len(self.body)


class RequestParser:
    """Feed it bytes; complete request heads come out in ``ready``, in order.

    The first request in ``ready`` may still be receiving its body (``complete``
    is False until its last byte); the ones after it were pipelined. A request
    that breaks HTTP raises ProtocolError from ``feed``; the parser is then
    unusable, and the connection must answer the error and close.
    """

    __slots__ = (
        "_parser",
        "ready",
        "_current",
        "_receiving",
        "_head_bytes",
        "_te_seen",
        "_hosts",
        "_url",
        "upgraded",
        "heads",
    )

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self.ready: deque[Request] = deque()
        self._current: Request | None = None  # the request whose head is being parsed
        # The request whose body is arriving: not always ready[-1], since the connection
        # takes a request out of ``ready`` once answered, and an early answer (404, 413)
        # comes before the rest of its body.
        self._receiving: Request | None = None
        self._head_bytes = 0
        self._te_seen = False
        self._hosts = 0
        self._url = b""
        self.upgraded = False  # CONNECT or Upgrade: nothing after that request is HTTP
        #: Request heads begun so far: the connection tells a new head from one it already
        #: gave a header deadline.
        self.heads = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises ProtocolError for a request that breaks HTTP."""
        if self.upgraded:
            return  # what follows an upgrade request is not ours to parse
        starts = self._current is None and not self.ready
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserInvalidMethodError as error:
            # A method llhttp does not know (lowercase ones included) in a well-formed
            # request line is not implemented; anything else there is a bad request. Only
            # a request line at the start of a read is looked at.
            known_line = starts and _REQUEST_LINE.match(data) is not None
            raise ProtocolError(501 if known_line else 400, str(error)) from None
        except httptools.HttpParserUpgrade:
            self.upgraded = True
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            if isinstance(cause, ProtocolError):
                raise cause from None
            raise  # a bug of ours, not the client's
        except httptools.HttpParserError as error:
            raise ProtocolError(self._status_of(str(error)), str(error)) from None
        if self._current is not None:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                raise ProtocolError(431, f"request head over {MAX_HEAD} bytes")

    @property
    def idle(self) -> bool:
        """No request begun and none waiting: between requests."""
        return self._current is None and not self.ready

    @property
    def receiving_head(self) -> bool:
        return self._current is not None

    def _status_of(self, reason: str) -> int:
        """The status for one of llhttp's refusals (it says which in words only)."""
        if "HTTP version" in reason:
            return 505
        if "Transfer-Encoding" in reason and "Content-Length" not in reason:
            return 400 if self._te_seen else 501  # a second one, or a coding we lack
        return 400

    # httptools' callbacks

    def on_message_begin(self) -> None:
        self._current = Request()
        self._head_bytes = 0
        self._te_seen = False
        self._hosts = 0
        self._url = b""
        self.heads += 1

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            raise ProtocolError(414, f"request target over {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._current
        assert request is not None
        if len(request.headers) >= MAX_HEADERS:
            raise ProtocolError(431, f"more than {MAX_HEADERS} header lines")
        if len(name) + len(value) > MAX_HEADER_LINE:
            raise ProtocolError(431, f"a header line over {MAX_HEADER_LINE} bytes")
        lower = name.lower()
        text = value.decode("latin-1")
        if lower == b"host":
            self._hosts += 1
        elif lower == b"transfer-encoding":
            if self._te_seen:
                raise ProtocolError(400, "more than one Transfer-Encoding header")
            self._te_seen = True
            if value.strip().lower() != b"chunked":
                raise ProtocolError(501, f"unsupported Transfer-Encoding {value[:40]!r}")
            request.chunked = True
        elif lower == b"content-length":
            request.content_length = int(value)  # llhttp checked: digits only, one header
        elif lower == b"expect":
            request.expect_continue = value.strip().lower() == b"100-continue"
        elif lower == b"x-request-id":
            known, text_id = request.request_id, text.strip()
            request.request_id = text_id if known is None else f"{known},{text_id}"
        elif lower == b"origin":
            request.origin = True
        request.headers.append((name.decode("latin-1"), text))

    def on_headers_complete(self) -> None:
        request = self._current
        assert request is not None
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise ProtocolError(400, f"no HTTP version {version!r} here")  # HTTP/0.9 style
        if self._hosts != 1:
            if self._hosts > 1:
                raise ProtocolError(400, "more than one Host header")
            if version == "1.1":
                raise ProtocolError(400, "no Host header in an HTTP/1.1 request")
        if version == "1.0" and self._te_seen:
            raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        request.version = version
        request.method = parser.get_method().decode("ascii")
        request.target = self._url.decode("latin-1")
        request.keep_alive = parser.should_keep_alive()
        request.upgrade = parser.should_upgrade()
        if version == "1.0":
            request.expect_continue = False
        self._current = None
        self._url = b""
        self._receiving = request
        self.ready.append(request)

    def on_body(self, body: bytes) -> None:
        request = self._receiving
        assert request is not None
        request.received += len(body)
        request.body += body

    def on_message_complete(self) -> None:
        request = self._receiving
        assert request is not None
        request.complete = True
        self._receiving = None  # an idle connection keeps no request
