import pytest

from apiphant.product import ProductError, locate
from apiphant.routing import BadTarget, RouteError, describe, discover, load
from tests.servers import MYPRODUCT, SELFCHECK


def test_template_product_routes_include_nested_targets():
    routes = load(locate(MYPRODUCT))
    assert "/api/v0/echo/read" in routes
    assert "/api/v0/users/settings/update" in routes
    hatches = load(locate(SELFCHECK))
    assert "/api/v0/self/delete" not in hatches
    assert hatches["/api/v0/raw/read"].raw_environ and hatches["/api/v0/raw/read"].raw_response


def test_discover_lists_modules_packages_and_versions_without_importing(make_product):
    root = make_product({
        "api/v0/a.py": "raise SystemExit('imported!')",
        "api/v0/pkg/__init__.py": "",
        "api/v0/pkg/deep/leaf.py": "",
        "api/v1/b.py": "",
        "api/v1/_private.py": "",
        "api/v1/__init__.py": "",
        "api/vx/c.py": "",
        "api/notes.txt": "",
    })
    targets = discover(locate(root))
    assert [t.url for t in targets] == [
        "/api/v0/a", "/api/v0/pkg", "/api/v0/pkg/deep/leaf", "/api/v1/b"]
    assert targets[2].module == "prod.api.v0.pkg.deep.leaf"


def test_only_the_four_actions_are_routed(make_product):
    root = make_product({
        "api/v0/t.py": """
            import json
            def read(request): return {}
            def helper(request): return {}
            def _delete(request): return {}
        """,
    }, name="only4")
    routes = load(locate(root))
    assert list(routes) == ["/api/v0/t/read"]
    assert describe(routes) == ["POST /api/v0/t/read  only4.api.v0.t:read"]


def test_a_package_target_defines_actions_in_its_init(make_product):
    root = make_product({"api/v0/users/__init__.py": "def create(r): return {}"}, name="pkgt")
    assert "/api/v0/users/create" in load(locate(root))


def test_import_error_is_one_line_with_file_line_and_error(make_product):
    root = make_product({"api/v0/broken.py": "x = 1\nimport not_a_module_at_all\n"},
                        name="broken1")
    with pytest.raises(RouteError) as caught:
        load(locate(root))
    assert str(caught.value) == (f"cannot import {root / 'api/v0/broken.py'}:2: "
                                 "ModuleNotFoundError: No module named 'not_a_module_at_all'")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)  # for --debug


def test_module_and_folder_with_the_same_target_name_is_refused(make_product):
    root = make_product({"api/v0/users.py": "", "api/v0/users/settings.py": ""}, name="twice")
    with pytest.raises(RouteError, match="both users.py and users/"):
        discover(locate(root))


def test_an_action_that_is_not_callable_is_refused(make_product):
    root = make_product({"api/v0/t.py": "read = 5\n"}, name="notcallable")
    with pytest.raises(RouteError, match="read is not a function"):
        load(locate(root))


def test_product_errors_are_one_line(tmp_path):
    with pytest.raises(ProductError, match="no such product folder"):
        locate(tmp_path / "nope")
    (tmp_path / "noapi").mkdir()
    with pytest.raises(ProductError, match="no api/ folder"):
        locate(tmp_path / "noapi")
    (tmp_path / "my-product" / "api").mkdir(parents=True)
    with pytest.raises(ProductError, match="expected an ASCII Python identifier"):
        locate(tmp_path / "my-product")


@pytest.mark.parametrize(("source", "says"), [
    ("async def read(request):\n    return {}\n", "read is async def; apiphant runs handlers "
     "on gevent, which needs no async: write def read(request)"),
    ("async def read(request):\n    yield {}\n", "read is async def;"),
    ("def read(request):\n    yield {}\n", "read is a generator (it yields); return a dict"),
])
def test_async_and_generator_handlers_are_refused_naming_file_and_line(make_product, source,
                                                                        says):
    root = make_product({"api/v0/t.py": "\n" + source}, name="asyncs")
    with pytest.raises(BadTarget) as caught:
        load(locate(root))
    assert str(caught.value).startswith(f"{root / 'api/v0/t.py'}:2: {says}")


def test_a_raw_response_handler_may_stream_its_body(make_product):
    root = make_product({"api/v0/t.py": """
        from apiphant.hatches import raw_response

        @raw_response
        def read(request, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"streamed"
    """}, name="streams")
    assert list(load(locate(root))) == ["/api/v0/t/read"]
