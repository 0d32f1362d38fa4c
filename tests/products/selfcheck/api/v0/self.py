"""Self-tests of apiphant's internals, driven by ../../test.py (as in the seed).

``create`` picks a behaviour by ``request.test``. A fixture of apiphant's own tests, not
part of the template product a user copies.
"""

from apiphant.validation import ApiError, Invalid, field


def create(request):
    test = field(request, "test")

    # apiphant.app: what a handler may return or raise
    if test == "return invalid_json_object":
        return "invalid_json_object"
    if test == "1/0":
        return {"x": 1 / 0}
    if test == "return none":
        return None
    if test == "api_error":
        raise ApiError(403)
    if test == "api_error_body":
        raise ApiError(409, {"conflict": "exists"})
    if test == "invalid_explain":
        raise Invalid("id", -1)

    # apiphant.validation.field
    x = None
    if test == "optional":
        x = field(request, "x")
    elif test == "default":
        x = field(request, "x", default_value="X")
    elif test == "required":
        x = field(request, "x", is_required=True)
    elif test == "valid_value":
        x = field(request, "x", is_required=True, valid_value="X")
    elif test == "valid_type":
        x = field(request, "x", is_required=True, valid_type=int)
    elif test == "valid_length":
        x = field(request, "x", is_required=True, valid_length=2)
    elif test == "max_length":
        x = field(request, "x", is_required=True, max_length=2)
    elif test == "explain":
        x = field(request, "x", is_required=True, valid_type=int, explain="should be integer")
    elif test == "subfield":
        address = field(request, "address", is_required=True, valid_type=dict)
        x = field(address, "city", is_required=True, valid_type=str)
    elif test == "list_item":
        for item in field(request, "items", is_required=True, valid_type=list):
            field(item, "id", is_required=True, valid_type=int)
        x = len(request["items"])
    elif test == "attribute":
        x = request.copy().nested.value
    return {"ok": True, "x": x}


def read(request):
    """Nested objects keep attribute access, copies included."""
    return {"copy_type": type(request.copy()).__name__, "keys": sorted(request)}
