"""What a handler may know about its HTTP request beyond the JSON: ``def read(request, http)``.

Everything here reads only the WSGI environ, so it works under any WSGI server.
The request id lives in a context variable: the server starts each burst of requests
with a fresh context, so log lines and Sentry events of one request carry its id.
"""

import ipaddress
import random
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar

from apiphant.http.response import SERVER_HEADERS, check_header

REQUEST_ID_HEADER = "X-Request-Id"
#: An incoming id is kept when it looks like one (Nginx's $request_id is 32 hex digits);
#: anything else is replaced, so a client cannot write arbitrary text into the logs.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")

request_id_var: ContextVar[str] = ContextVar("apiphant_request_id", default="")

#: apiphant's server's environ key: the address the worker listens on, when that is one
#: address (not a wildcard). A connection from the worker's own host to that address comes
#: from it too.
LOCAL_ADDRESS = "apiphant.local_address"


def current_request_id() -> str:
    """The id of the request being handled in this greenlet, or ""."""
    return request_id_var.get()


def request_id(incoming: str) -> str:
    """The incoming X-Request-Id when it is well-formed, else a new one: 32 random hex
    digits, as Nginx's $request_id. An id names a request in the logs, it guards nothing,
    so it comes from ``random`` (seeded from the OS at start, re-seeded in a forked child)
    rather than a system call per request: 0.6 µs in process, ``os.urandom(16).hex()``
    0.65 to 0.9 µs (this line, regex included, was 5% of the worker's samples in py-spy at
    50 connections, 4% after), ``uuid4().hex`` 2.8 µs before both."""
    return incoming if REQUEST_ID.fullmatch(incoming) else new_request_id()


def new_request_id() -> str:
    """A fresh request id (``request_id``'s answer when none came)."""
    return f"{random.getrandbits(128):032x}"


def request_id_of(environ: Mapping[str, str]) -> str:
    """The request id of a WSGI request (``request_id`` of its X-Request-Id)."""
    return request_id(environ.get("HTTP_X_REQUEST_ID", ""))


def parse_addresses(values: Iterable[str]) -> frozenset[str]:
    """Trusted proxy addresses, normalised (``::1``, ``127.0.0.1``); ValueError names a bad one."""
    result = set()
    for value in values:
        value = value.strip()
        if not value:
            continue
        try:
            result.add(str(ipaddress.ip_address(value)))
        except ValueError:
            raise ValueError(f"expected an IP address like 127.0.0.1, got {value!r}") from None
    return frozenset(result)


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address.strip()))
    except ValueError:
        return ""


def client_address(environ: Mapping[str, str], trusted: frozenset[str]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the
    right-most X-Forwarded-For entry that is not a trusted proxy (a client can put anything
    on the left of that header, so only what trusted proxies appended counts)."""
    peer = environ.get("REMOTE_ADDR", "")
    if _normal(peer) not in trusted or not trusted:
        return peer
    hops = [hop.strip() for hop in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        normal = _normal(hop)
        if not normal:
            return peer  # garbage where a proxy should have written an address
        if normal not in trusted:
            return normal
    return peer


#: Headers a proxy adds: from a peer that is not trusted, the request came through someone
#: else's proxy (or says it did).
_PROXIED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


def from_deployment(environ: Mapping[str, str], trusted: frozenset[str]) -> bool:
    """Whether the client is the deployment itself: the host the worker runs on (loopback,
    or the worker's own address), or a trusted proxy asking for itself. Through a trusted
    proxy the client is the one it names (``client_address``); through a proxy that is not
    trusted (an X-Forwarded-For from an untrusted peer) it is nobody's."""
    client = _normal(client_address(environ, trusted))
    if not client:
        return False
    peer = _normal(environ.get("REMOTE_ADDR", ""))
    if peer not in trusted and any(key in environ for key in _PROXIED):
        return False
    address = ipaddress.ip_address(client)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or client in trusted
        or str(address) == _normal(environ.get(LOCAL_ADDRESS, ""))
    )


def scheme_of(environ: Mapping[str, str], trusted: frozenset[str]) -> str:
    """``https`` when a trusted proxy says the client used it, else the server's scheme."""
    scheme = environ.get("wsgi.url_scheme", "http")
    if trusted and _normal(environ.get("REMOTE_ADDR", "")) in trusted:
        forwarded = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
        if forwarded in ("http", "https"):
            return forwarded
    return scheme


class Headers(Mapping[str, str]):
    """The request's headers, read-only and case-insensitive: ``http.headers["authorization"]``."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def __getitem__(self, name: str) -> str:
        value = self._environ.get(self._key(name))
        if not isinstance(value, str):
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and self._environ[key]:
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class Http:
    """One request's HTTP side, for a handler or hook that declares a second parameter.

    Read-only: ``headers``, ``client`` (address), ``scheme``, ``request_id``, ``method``,
    ``path``; ``set_header(name, value)`` for the answer, errors included; and ``status``,
    set to answer a success other than the action's (``http.status = 201``). Computed when
    asked for, so a handler that never looks costs nothing.
    """

    __slots__ = ("_environ", "_trusted", "request_id", "_out", "status")

    def __init__(self, environ: Mapping[str, str], trusted: frozenset[str], request_id: str):
        self._environ = environ
        self._trusted = trusted
        self.request_id: str = request_id
        self._out: list[tuple[str, str]] = []
        #: The success status this answer gets, when the handler or a hook sets it: a 2xx
        #: with a body (``errors.success_status``); None keeps the action's (200, or @status).
        self.status: int | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        return Headers(self._environ)

    @property
    def client(self) -> str:
        """The client's address; X-Forwarded-For counts only from a trusted proxy."""
        return client_address(self._environ, self._trusted)

    @property
    def scheme(self) -> str:
        return scheme_of(self._environ, self._trusted)

    @property
    def method(self) -> str:
        return self._environ.get("REQUEST_METHOD", "")

    @property
    def path(self) -> str:
        return self._environ.get("PATH_INFO", "")

    def set_header(self, name: str, value: str) -> None:
        """Add a header to the answer. Refused with ValueError (the handler's bug, a 500):
        a control byte in the value (header injection), and the headers that frame the
        answer or speak for the connection (Content-Length, Transfer-Encoding, Connection,
        the other hop-by-hop ones), which the server alone sends."""
        value = str(value)
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"bad response header {name!r}: {value!r}")
        check_header(name, value)
        if name.lower() in SERVER_HEADERS:
            raise ValueError(f"the response header {name} is the server's to send")
        self._out.append((name, value))

    @property
    def response_headers(self) -> list[tuple[str, str]]:
        """What handlers and hooks set, in order."""
        return self._out
