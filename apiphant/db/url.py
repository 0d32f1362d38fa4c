"""DATABASE_URL as a person may see it: with its password masked, in both of libpq's forms.

Pure and standard library only: the commands, the log lines and the error messages all show
a URL through ``masked``, and a message that might quote the password through ``scrubbed``.
"""

import re
from urllib.parse import quote, unquote, urlsplit

#: What a masked password becomes.
MASK = "***"
#: ``postgresql://user:PASSWORD@host``: the part between the user's colon and the ``@``.
_URI_PASSWORD = re.compile(r"^(\w+://[^:/@?#]*:)([^@/?#]*)(@)")
#: ``?password=...`` or ``&password=...`` in a URI's query.
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#]*)", re.I)
#: ``password=secret`` or ``password = 'a b\\'c'`` in the key=value form.
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*)", re.I)


def is_uri(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def masked(url: str) -> str:
    """``url`` with its password, wherever libpq would read one, replaced by ``***``."""
    if is_uri(url):
        return _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", _URI_PASSWORD.sub(rf"\g<1>{MASK}\3", url))
    return _KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", url)


def password(url: str) -> str:
    """The password ``url`` holds, or ""; for scrubbing it out of messages."""
    if is_uri(url):
        found = _URI_PASSWORD.match(url) or _QUERY_PASSWORD.search(url)
        return unquote(found[2]) if found else ""
    found = _KEYWORD_PASSWORD.search(url)
    if not found:
        return ""
    value = found[2]
    if value.startswith("'"):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def scrubbed(message: str, url: str) -> str:
    """``message`` (a driver's error, say) with ``url``'s password masked, should it quote
    it: what a command prints must never hold the password."""
    secret = password(url)
    return message.replace(secret, MASK) if secret else message


def socket_url(folder: str, user: str, dbname: str) -> str:
    """The URI of a database reached through the Unix socket in ``folder`` (no TCP)."""
    return f"postgresql://{quote(user)}@/{quote(dbname)}?host={quote(folder, safe='/')}"


def host_of(url: str) -> str:
    """Where ``url`` points, for a log line: a host name or a socket folder."""
    if is_uri(url):
        parts = urlsplit(url)
        query = dict(p.partition("=")[::2] for p in parts.query.split("&") if p)
        return unquote(query.get("host", "")) or parts.hostname or "localhost"
    found = re.search(r"\bhost\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url)
    return found[1].strip("'") if found else "localhost"
