"""``[nginx]``: the front (but ``tls_listen``, read with HTTPS)."""

from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.front import Nginx
from apiphant.deploy.config.model import Api
from apiphant.deploy.config.reader import Reader, listen, rate


def read_nginx(n: Reader) -> Nginx:
    """The front: where it listens, how long it waits, how much it lets a client ask."""
    dn = Nginx()
    listen_host, listen_port = listen(n)
    nginx = Nginx(
        listen_host=listen_host,
        listen_port=listen_port,
        connect_timeout=n.nginx_seconds("connect_timeout", dn.connect_timeout),
        read_timeout=n.nginx_seconds("read_timeout", dn.read_timeout),
        send_timeout=n.nginx_seconds("send_timeout", dn.send_timeout),
        client_timeout=n.nginx_seconds("client_timeout", dn.client_timeout),
        keepalive_timeout=n.nginx_seconds("keepalive_timeout", dn.keepalive_timeout),
        upstream_keepalive=n.integer(
            "upstream_keepalive", dn.upstream_keepalive, low=1, high=10000
        ),
        upstream_keepalive_timeout=n.nginx_seconds(
            "upstream_keepalive_timeout", dn.upstream_keepalive_timeout
        ),
        fail_timeout=n.integer("fail_timeout", dn.fail_timeout, low=0, high=86400),
        worker_connections=n.integer(
            "worker_connections", dn.worker_connections, low=1024, high=1048576 - 1024
        ),
        limit_conn=n.integer("limit_conn", dn.limit_conn, low=0, high=1000000),
        limit_req=rate(n, "limit_req"),
        limit_req_burst=n.integer("limit_req_burst", dn.limit_req_burst, low=0, high=1000000),
        local_port=n.integer("local_port", dn.local_port, low=1, high=65535),
    )
    if nginx.local_port == listen_port:
        raise n.fail(
            "local_port", f"a port other than nginx.listen's ({listen_port})", nginx.local_port
        )
    return nginx


def check_drain(shown: str, api: Api, nginx: Nginx) -> None:
    """A draining worker outwaits Nginx's idle upstream connections, within its own drain."""
    if api.drain_timeout <= nginx.drain_idle_grace:
        raise ConfigError(
            f"{shown}: api.drain_timeout: expected more than {nginx.drain_idle_grace:g}s "
            f"(nginx.upstream_keepalive_timeout + 1: a draining worker waits that long before "
            f"closing an idle connection), got {api.drain_timeout:g}"
        )

