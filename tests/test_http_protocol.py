"""http/ reaches apiphant's App through a Protocol, not an import: which applications take
the direct path, and what a Connection may read of its server."""

from apiphant.app import App, create_app
from apiphant.http.protocol import ConnectionOwner, direct_path
from apiphant.http.server import Server
from tests.servers import MYPRODUCT, server_in_thread


def test_only_a_class_that_defines_direct_takes_the_direct_path():
    app = create_app(MYPRODUCT)
    assert direct_path(app) == app.direct

    class Logged(App):  # adds around __call__: skipping it would skip what it adds
        def __call__(self, environ, start_response):
            return super().__call__(environ, start_response)

    class Faster(App):
        def direct(self, request, stream, environ):
            return super().direct(request, stream, environ)

    for cls, direct in ((Logged, False), (Faster, True)):
        sub = cls(app.product, app.routes, app.max_body)
        assert (direct_path(sub) is not None) == direct, cls
    assert direct_path(lambda environ, start_response: app(environ, start_response)) is None
    assert direct_path(object()) is None


def test_a_server_has_everything_a_connection_reads_of_it():
    wanted = set(ConnectionOwner.__annotations__) | {"dispatch", "forget"}
    assert len(wanted) == 10
    with server_in_thread(create_app(MYPRODUCT)) as server:
        assert isinstance(server, Server)
        missing = {name for name in wanted if not hasattr(server, name)}
    assert not missing
