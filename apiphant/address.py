"""Parse ``HOST:PORT`` and ``[IPv6]:PORT`` into a bind address."""


class AddressError(ValueError):
    """A bad address argument; the message is one line for the user."""


def parse_address(text: str) -> tuple[str, int]:
    """``"127.0.0.1:8001"`` -> ``("127.0.0.1", 8001)``; ``"[::1]:8001"`` -> ``("::1", 8001)``."""
    if "://" in text or "/" in text:
        raise AddressError(
            f"bad address {text!r}: expected HOST:PORT, no scheme or path, like 127.0.0.1:8001"
        )
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise AddressError(f"bad address {text!r}: expected HOST:PORT, like 127.0.0.1:8001")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host:
            raise AddressError(f"bad address {text!r}: empty IPv6 host")
    elif ":" in host:
        raise AddressError(f"bad address {text!r}: write an IPv6 host in brackets, like [::1]:8001")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"bad address {text!r}: port should be a number from 1 to 65535")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """HOST:PORT as apiphant, Nginx and URLs read it: an IPv6 host in brackets. The one
    place an address and a port are joined."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
