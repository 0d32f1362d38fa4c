"""An unmodified 0.2.5-style product (handlers, validation, escape hatches, background, test
file) runs end to end: every import path of 0.2.x's documentation and source still works,
and the ones that moved warn once, naming the new path."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

from tests.servers import serving

PRODUCT_02 = {
    "__init__.py": "",
    "api/__init__.py": "",
    "api/v0/__init__.py": "",
    "api/v0/echo.py": """
        # from oldshop.api import anything
        def read(request):
            response = request.copy()
            response.server = 'oldshop'
            return response
    """,
    "api/v0/items.py": """
        from apiphant.validation import ApiError, field, Invalid, Missing, BadRequest
        from apiphant.validation import status_by_code

        def read(request):
            id = field(request, 'id', is_required=True, valid_type=int)
            if id == 0:
                raise Invalid('id', id)
            if id == 403:
                raise ApiError(403)
            return {'id': id, 'status': status_by_code[200]}
    """,
    "api/v0/upload.py": """
        from apiphant.server import raw_environ, raw_response

        @raw_environ
        def update(environ):
            return {'method': environ['REQUEST_METHOD']}

        @raw_response
        def delete(request, start_response):
            start_response('200 OK', [('Content-Type', 'text/plain')])
            return [b'deleted']
    """,
    "api/background.py": """
        from apiphant.background import seconds

        @seconds(60)
        def update_something():
            print('updated', flush=True)
    """,
    "test.py": """
        from apiphant.test import test, config
        import os
        config.port = int(os.environ['PORT02'])
        test('echo', 'read', {"hello": "world"}, 200, {"hello": "world", "server": "oldshop"})
        test('items', 'read', {"id": 7}, 200, {"id": 7, "status": "200 OK"})
        test('items', 'read', {}, 400, {"error": {"field": "id", "state": "missing"}})
        test('items', 'read', {"id": 0}, 400,
             {"error": {"field": "id", "state": "invalid", "explain": 0}})
        test('items', 'read', {"id": 403}, 403, {"error": "403 Forbidden"})
        test('upload', 'update', {}, 200, {"method": "POST"})
    """,
}


def test_a_02_product_serves_tests_and_runs_its_tasks(make_product, tmp_path):
    root = make_product(PRODUCT_02, name="oldshop")
    with serving(root, tmp_path) as live:  # the seed's `apiphant PRODUCT HOST:PORT`
        result = subprocess.run([sys.executable, str(root / "test.py")], capture_output=True,
                                text=True, timeout=60,
                                env={**os.environ, "PORT02": str(live.port)})
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[0] == (
            f'POST http://127.0.0.1:{live.port}/api/v0/echo/read {{"hello": "world"}} --> 200 '
            "{'hello': 'world', 'server': 'oldshop'}")
    script = Path(sys.executable).parent / "apiphant-background"  # the seed's command
    command = [str(script)] if script.exists() else [sys.executable, "-m", "apiphant.background"]
    background = subprocess.Popen([*command, str(root)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
    try:
        lines = [background.stdout.readline() for _ in range(2)]
    finally:
        background.terminate()
        background.wait(15)
    assert "updated\n" in lines


def test_moved_paths_warn_once_naming_the_new_path():
    import apiphant.server as server
    import apiphant.validation as validation
    from apiphant import compat
    from apiphant.hatches import raw_environ

    compat._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert server.raw_environ is raw_environ
        assert server.raw_environ is raw_environ
        assert validation.status_by_code[404] == "404 Not Found"
    assert [str(w.message) for w in caught] == [
        "apiphant.server.raw_environ moved to apiphant.hatches.raw_environ: "
        "import it from apiphant.hatches",
        "apiphant.validation.status_by_code moved to apiphant.errors.STATUS_BY_CODE: "
        "import it from apiphant.errors",
    ]
    assert all(w.category is DeprecationWarning for w in caught)
    assert all(w.filename == __file__ for w in caught)  # points at the caller's line


def test_the_documented_02_paths_import():
    from apiphant.background import seconds  # noqa: F401
    from apiphant.paths import init_paths  # noqa: F401
    from apiphant.test import test  # noqa: F401
    from apiphant.validation import ApiError, BadRequest, Invalid, Missing, field  # noqa: F401
