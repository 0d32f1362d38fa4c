"""The OpenAPI 3.1 document of a product: a pure function of its routes and their readings.

Every route is ``POST`` with a JSON object body (optional when no field is required: an
empty body is ``{}``); its success is its ``@status`` (200 by default) with a JSON object;
its errors are those the server answers for any route (shared components: 400 with the
field-error shape, 404, 413, 429 and 503 from the deploy's Nginx or a busy worker) and
those its code raises (``ApiError(409)``). 405 with ``Allow`` answers any other method.
"""

from typing import Any

from apiphant.errors import status_line
from apiphant.openapi.reading import Reading

OPENAPI = "3.1.0"
REF = "#/components/"
#: The header every answer carries (context.REQUEST_ID_HEADER), and Retry-After.
REQUEST_ID = "X-Request-Id"
IDEMPOTENCY_KEY = "Idempotency-Key"
#: What apiphant.db.idempotency.parse_key takes: 1 to 255 printable ASCII characters (no
#: space at either end: a header's are trimmed), or RFC 8941's quoted String of them.
KEY_PATTERN = (r'^(?:[\x21\x23-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?'
               r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\]){1,255}")$')
#: The answers any route may give, by status: their component's name and what they mean.
SHARED = {
    400: ("BadRequest", "the body is not a JSON object, or a field breaks its rule "
                        "(error names the field)"),
    404: ("NotFound", "no such route, or nothing the request names"),
    413: ("TooLarge", "the body is over the size limit, or holds too many JSON values"),
    429: ("TooManyRequests", "over the deployment's rate or connection limit; retry later"),
    503: ("Unavailable", "no worker or database connection free in time, or no database "
                         "configured; retry later"),
}  # fmt: skip
#: An answer to another method than POST: the component only (an operation is its method).
METHOD_NOT_ALLOWED = ("MethodNotAllowed", "a method other than POST; Allow names POST")
#: The answers of an action that honours Idempotency-Key (apiphant.db.idempotency).
IDEMPOTENT = {409: "a request with this key is still being processed; retry later",
              422: "this key was used with another request body"}  # fmt: skip


def _error_schemas() -> dict[str, Any]:
    field_error = {
        "type": "object",
        "required": ["field", "state"],
        "properties": {
            "field": {"type": "string", "description": "the field's path, like address.city"},
            "state": {"type": "string", "description": "missing, invalid, or the handler's"},
            "explain": {"description": "what a valid value is"},
        },
    }
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"anyOf": [{"type": "string"}, {"$ref": f"{REF}schemas/FieldError"},
                                           {}]}},  # fmt: skip
        "description": "every error: a status line, a field's error, or what the handler "
        "raised with ApiError",
    }
    return {"Error": error, "FieldError": field_error}


def _error(description: str, *headers: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "headers": {name: {"$ref": f"{REF}headers/{name}"} for name in (REQUEST_ID, *headers)},
        "content": {"application/json": {"schema": {"$ref": f"{REF}schemas/Error"}}},
    }
    return answer


def components() -> dict[str, Any]:
    responses = {name: _error(what, *(("Retry-After",) if code in (429, 503) else ()))
                 for code, (name, what) in SHARED.items()}  # fmt: skip
    responses[METHOD_NOT_ALLOWED[0]] = _error(METHOD_NOT_ALLOWED[1], "Allow")
    return {
        "schemas": _error_schemas(),
        "responses": responses,
        "headers": {
            REQUEST_ID: {"description": "the request's id, in its log lines too",
                         "schema": {"type": "string"}},
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}},
            "Allow": {"description": "the methods the route takes",
                      "schema": {"type": "string"}},
        },  # fmt: skip
    }


def _summary(description: str, path: str) -> str:
    first = description.strip().split("\n\n")[0].replace("\n", " ").strip()
    return first or path.rsplit("/", 1)[-1]


def operation(path: str, target: str, status: str, reading: Reading, extra: set[int],
              idempotent: bool, raw: bool) -> dict[str, Any]:  # fmt: skip
    """One route's POST operation. ``extra``: statuses its hooks raise; ``raw``: a
    ``@raw_response`` handler, whose answer is its own."""
    body = {"type": "object", **reading.body.json_schema()}
    code = status.split(" ", 1)[0]
    success: dict[str, Any] = {"description": status.split(" ", 1)[1]}
    if not raw:
        success["headers"] = {REQUEST_ID: {"$ref": f"{REF}headers/{REQUEST_ID}"}}
        success["content"] = {"application/json": {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {code: success}
    for each, (name, _) in SHARED.items():
        responses[str(each)] = {"$ref": f"{REF}responses/{name}"}
    own = reading.statuses | extra | (set(IDEMPOTENT) if idempotent else set())
    for each in sorted(own - set(SHARED) - {int(code)}):
        what = IDEMPOTENT.get(each, "") if idempotent else ""
        retry = ("Retry-After",) if idempotent and each == 409 else ()
        responses[str(each)] = _error(what or status_line(each).split(" ", 1)[1], *retry)
    found: dict[str, Any] = {
        "operationId": path.removeprefix("/api/").replace("/", "_"),
        "summary": _summary(reading.description, path),
        "tags": [target],
        "requestBody": {
            "required": bool(body.get("required")),
            "content": {"application/json": {"schema": body}},
        },
        "responses": dict(sorted(responses.items())),
    }
    if reading.description:
        found["description"] = reading.description
    if idempotent:
        found["parameters"] = [{
            "name": IDEMPOTENCY_KEY, "in": "header", "required": False,
            "description": "a retry with the same key and body gets the first answer again",
            "schema": {"type": "string", "pattern": KEY_PATTERN},
        }]  # fmt: skip
    return found


def document(title: str, version: str, operations: dict[str, dict[str, Any]],
             tags: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """The whole document: ``operations`` by path, ``tags`` (each target) with their
    module's docstring."""
    return {
        "openapi": OPENAPI,
        "info": {"title": title, "version": version,
                 "description": "Every route is POST with a JSON object; another method "
                 "gets 405 with Allow."},  # fmt: skip
        "tags": [{"name": name, **({"description": text} if text else {})}
                 for name, text in sorted(tags.items())],  # fmt: skip
        "paths": {path: {"post": operations[path]} for path in sorted(operations)},
        "components": components(),
    }
