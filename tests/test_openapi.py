"""The OpenAPI document: read from the routes and field() calls without calling a handler,
valid OpenAPI 3.1 (openapi-spec-validator, a checker no one here wrote), printed by
``apiphant openapi`` and served at /api/openapi.json with its page at /api/docs."""

import json
import random
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from openapi_spec_validator import validate

from apiphant.openapi import build
from apiphant.openapi.document import KEY_PATTERN
from apiphant.product import locate
from apiphant.routing import load, load_hooks
from tests.servers import MYPRODUCT, REPO, serving

CATALOG = REPO / "tests" / "products" / "catalog"


def document_of(folder) -> dict:
    product = locate(folder)
    return build(product.name, load(product), load_hooks(product), release="r1")


def body_of(document: dict, path: str) -> dict:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"][
        "schema"]


@pytest.mark.parametrize("folder", [MYPRODUCT, CATALOG], ids=["myproduct", "catalog"])
def test_the_document_is_valid_openapi_3_1(folder) -> None:
    document = document_of(folder)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == folder.name and document["info"]["version"] == "r1"
    assert set(document["paths"]) == set(load(locate(folder)))


def test_every_field_option_is_json_schema() -> None:
    schema = body_of(document_of(CATALOG), "/api/v1/items/create")
    fields = schema["properties"]
    assert schema["required"] == ["name", "sku", "price", "size"]  # is_required, positional too
    assert fields["name"] == {"type": "string", "maxLength": 40, "description": "its name"}
    assert fields["sku"] == {"type": "string", "pattern": "^(?:[A-Z]{3}-[0-9]{4})$",
                             "description": "like ABC-1234"}  # fmt: skip
    assert fields["price"] == {"type": "number", "minimum": 0, "maximum": 1e6}
    assert fields["quantity"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                  "default": 1}  # a module constant, unpacked  # fmt: skip
    assert fields["tags"] == {"type": "array", "maxItems": 5, "default": []}
    assert fields["color"] == {"enum": ["blue", "green", "red"]}
    assert fields["code"] == {"type": "string", "minLength": 4, "maxLength": 4}
    assert fields["kind"] == {"const": "item", "default": "item"}
    assert fields["note"] == {"type": ["null", "string"]}
    assert fields["gift"] == {"type": "boolean", "default": False}
    positive = {"type": "number", "exclusiveMinimum": 0, "description": "a positive number"}
    assert fields["size"] == {"type": "object", "required": ["width", "height"], "properties": {
        "width": positive, "height": positive, "depth": positive}}  # a helper, its arguments
    assert fields["parts"]["items"] == {
        "type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "count": {"type": "integer", "default": 1}}}
    assert fields["extra"] == {"description": "checked by the handler's own code, which the "
                                              "document does not read"}  # fmt: skip


def test_the_operation_has_its_status_docstring_and_errors() -> None:
    document = document_of(CATALOG)
    create = document["paths"]["/api/v1/items/create"]["post"]
    assert create["summary"] == "Add an item: 201 with it, or 409 when its name is taken."
    assert create["tags"] == ["v1/items"] and create["requestBody"]["required"] is True
    assert sorted(create["responses"]) == ["201", "400", "404", "409", "413", "422", "429",
                                           "503"]  # fmt: skip
    assert create["parameters"][0]["name"] == "Idempotency-Key"  # a write honours it
    read = document["paths"]["/api/v1/items/read"]["post"]
    assert "parameters" not in read and sorted(read["responses"]) == [
        "200", "400", "404", "413", "429", "503"]
    assert body_of(document, "/api/v1/items/read")["properties"]["fields"] == {
        "type": "array", "minItems": 2, "maxItems": 2}
    assert body_of(document, "/api/v1/items/read")["required"] == ["id"]  # fields: in an if
    errors = document["components"]
    assert errors["responses"]["MethodNotAllowed"]["headers"]["Allow"]
    assert errors["schemas"]["FieldError"]["required"] == ["field", "state"]
    assert document["tags"][0]["description"].startswith("Items of a catalog")


def test_reading_follows_the_ways_through_a_handler(make_product) -> None:
    """Required only where every way reads it; a non-literal option is free-form; the
    handler is never called (it would raise)."""
    folder = make_product({"api/v0/shop.py": '''
        from apiphant import ApiError
        from apiphant.validation import Invalid, field

        LIMIT = compute_nothing = None

        def read(request, http):
            """Look something up."""
            raise RuntimeError("never called")

        def update(request):
            if request.get("x"):
                field(request, "only_sometimes", is_required=True)
            always = field(request, "always", is_required=True, valid_type=str)
            request.token                           # a missing attribute is a 400 too
            address = field(request, "address")
            field(address, "city", is_required=True, valid_type=str)
            field(request, "free", is_required=True, valid_type=type(always))
            if always == "x":
                return {}
            field(request, "late", is_required=True)
            if always == "y":
                raise Invalid("always")
            raise ApiError(418)
    '''})
    document = document_of(folder)
    update = body_of(document, "/api/v0/shop/update")
    assert update["required"] == ["always", "token", "address", "free"]
    assert update["properties"]["address"] == {"type": "object", "required": ["city"],
                                               "properties": {"city": {"type": "string"}}}
    assert update["properties"]["token"] == {}
    assert "type" not in update["properties"]["free"]
    assert "only_sometimes" in update["properties"] and "late" in update["properties"]
    responses = document["paths"]["/api/v0/shop/update"]["post"]["responses"]
    assert "418" in responses and "400" in responses
    read = document["paths"]["/api/v0/shop/read"]["post"]
    assert read["description"] == "Look something up." and read["requestBody"]["required"] is False


def test_the_idempotency_key_pattern_is_what_the_server_takes() -> None:
    from apiphant.db.idempotency import parse_key
    from apiphant.errors import ApiError

    pattern = re.compile(KEY_PATTERN)
    chosen = random.Random(35)
    samples = ['a', '"a"', '""', '"a', 'a"b', "x" * 255, "x" * 256, '"' + "x" * 255 + '"',
               '"' + "x" * 256 + '"', r'"a\"b"', r'"a\b"', '" "', "caf\u00e9"]  # fmt: skip
    samples += ["".join(chosen.choice(' !"\\ax~') for _ in range(chosen.randint(1, 6)))
                for _ in range(3000)]  # fmt: skip
    for value in (s for s in samples if s == s.strip()):  # a header's ends are trimmed
        try:
            taken = parse_key(value) is not None
        except ApiError:
            taken = False
        assert bool(pattern.match(value)) == taken, value


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "apiphant", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO)  # fmt: skip


def test_apiphant_openapi_prints_it_and_refuses_a_bad_product_in_one_line(tmp_path) -> None:
    done = _run("openapi", str(CATALOG))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    validate(printed)
    assert printed["paths"] == document_of(CATALOG)["paths"]
    missing = _run("openapi", str(tmp_path / "nope"))
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr.strip().count("\n") == 0 and "no such product folder" in missing.stderr


def _get(url: str, method: str = "GET") -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_the_server_serves_the_document_and_the_page(tmp_path) -> None:
    with serving(CATALOG, tmp_path) as live:
        status, headers, body = _get(live.url + "/api/openapi.json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        assert json.loads(body)["paths"] == document_of(CATALOG)["paths"]
        status, headers, page = _get(live.url + "/api/docs")
        assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert b"http" not in page  # every file from this server: no CDN
        for name in re.findall(rb'(?:src|href)="(docs/[^"]+)"', page):
            status, headers, asset = _get(f"{live.url}/api/{name.decode()}")
            assert status == 200 and len(asset) > 0 and headers["X-Request-Id"], name
        status, headers, body = _get(live.url + "/api/docs", "POST")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert json.loads(body) == {"error": "405 Method Not Allowed"}
        assert _get(live.url + "/api/docs/other.js")[0] == 404
        assert _get(live.url + "/api/docs", "HEAD")[:1] == (200,)
    with serving(CATALOG, tmp_path, "--no-docs") as live:
        for path in ("/api/openapi.json", "/api/docs"):
            status, _, body = _get(live.url + path)
            assert (status, json.loads(body)) == (404, {"error": "404 Not Found"})
    with serving(CATALOG, tmp_path, env={"APIPHANT_DOCS": "false"}) as live:
        assert _get(live.url + "/api/docs")[0] == 404


@pytest.mark.parametrize("regex", [r"[^@\s]+@[^@\s]+\.[^@\s]+", r"a\sb", r"\S+", r"[]a]\s",
                                   r"x\\s", r"[A-Z]{3}-[0-9]{4}"])  # fmt: skip
def test_a_pattern_means_what_python_matched(regex: str) -> None:
    """JSON Schema's \\s is ECMA-262's, which leaves out \\x1c-\\x1f and \\x85 that Python's
    takes: the document spells Python's; schemathesis found the difference."""
    from apiphant.openapi.schemas import pattern

    translated = pattern(regex, "fullmatch")["pattern"]
    assert not re.search(r"\\[sSdDwW]", translated.replace("\\\\", ""))  # no engine's own
    python, portable = re.compile(regex), re.compile(translated)
    chosen = random.Random(regex)
    alphabet = "a@.b]xAZ09-\\ \t\x1c\x1f\x85\u3000\u200b"
    for _ in range(5000):
        value = "".join(chosen.choice(alphabet) for _ in range(chosen.randint(0, 8)))
        assert bool(python.fullmatch(value)) == bool(portable.search(value)), value


def test_a_pattern_with_pythons_own_meaning_is_left_free_form() -> None:
    from apiphant.openapi.schemas import pattern

    assert [pattern(p, "search") for p in (r"\d+", r"\w", r"(?P<x>a)", r"(?i)a", r"\Aa")] == [
        None] * 5
    assert pattern(r"\\d", "search") == {"pattern": r"\\d"}  # a backslash, then d


def test_without_swagger_uis_package_the_page_says_what_to_install() -> None:
    from apiphant.openapi import page

    missing = page.page("shop", None).decode()
    assert "pip install &#x27;apiphant[docs]&#x27;" in missing and 'href="openapi.json"' in missing
    assert page.asset("swagger-ui-bundle.js", None) is None
    assert page.folder() is not None  # the test extra installs it
