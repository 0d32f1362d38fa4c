"""``[api]`` and ``[background]``: what the API workers and the background runner are
started with."""

from apiphant.cors import CorsError, policy
from apiphant.deploy.config.errors import ConfigError
from apiphant.deploy.config.model import DEFAULT_STOP_TIMEOUT, Api, Background
from apiphant.deploy.config.patterns import ANY_TEXT
from apiphant.deploy.config.reader import Reader, size


def read_api(a: Reader) -> Api:
    """The workers' serve options, and a CORS policy the workers will accept."""
    d = Api()
    api = Api(
        max_body=size(a, "max_body", d.max_body),
        max_json_values=a.integer("max_json_values", d.max_json_values),
        keepalive_timeout=a.seconds("keepalive_timeout", d.keepalive_timeout),
        header_timeout=a.seconds("header_timeout", d.header_timeout),
        request_timeout=a.seconds("request_timeout", d.request_timeout),
        drain_timeout=a.seconds("drain_timeout", d.drain_timeout),
        max_connections=a.integer("max_connections", 1) if a.has("max_connections") else None,
        access_log=a.flag("access_log", d.access_log),
        cors_origins=a.names("cors_origins", ANY_TEXT, "origins like 'https://a.example'", []),
        cors_headers=a.names("cors_headers", ANY_TEXT, "header names like 'Authorization'", []),
    )
    for key, origins, headers in (("cors_origins", api.cors_origins, ()),
                                  ("cors_headers", (), api.cors_headers)):  # fmt: skip
        try:
            policy(origins, headers)
        except CorsError as error:
            raise ConfigError(f"{a.shown}: api.{key}: {error}") from None
    return api


def read_background(b: Reader) -> Background:
    """``apiphant-background --stop-timeout``."""
    return Background(b.seconds("stop_timeout", DEFAULT_STOP_TIMEOUT))
