"""Items of a catalog: every field() option, each the way a handler writes it."""

import re

from apiphant import ApiError, status
from apiphant.validation import field

#: A stock-keeping unit: three capitals, a dash, four digits.
SKU = re.compile(r"[A-Z]{3}-[0-9]{4}")
COLORS = frozenset({"red", "green", "blue"})
MAX_TAGS, MAX_QUANTITY = 5, 1000
TAKEN = "taken"


def _anything(value) -> bool:
    """A check the document cannot read: the field is shown free-form."""
    return True


def _size(owner, name: str, required: bool = True) -> float:
    """A helper with literal arguments: the document reads it as if inlined."""
    return field(owner, name, is_required=required, valid_type=float,
                 valid_value=lambda n: n > 0, explain="a positive number")


@status(201)
def create(request):
    """Add an item: 201 with it, or 409 when its name is taken."""
    name = field(request, "name", True, valid_type=str, max_length=40, explain="its name")
    sku = field(request, "sku", is_required=True, valid_value=SKU.fullmatch,
                explain="like ABC-1234")
    price = field(request, "price", is_required=True, valid_type=(int, float),
                  valid_value=lambda p: 0 <= p <= 1e6)
    quantity = field(request, "quantity", default_value=1, valid_type=int,
                     valid_value=lambda n: 1 <= n <= MAX_QUANTITY)
    tags = field(request, "tags", default_value=[], valid_type=list, max_length=MAX_TAGS)
    color = field(request, "color", valid_value=COLORS)
    code = field(request, "code", valid_type=str, valid_length=4)
    kind = field(request, "kind", default_value="item", valid_value="item")
    note = field(request, "note", valid_type=(str, type(None)))
    gift = field(request, "gift", default_value=False, valid_type=bool)
    size = field(request, "size", is_required=True, valid_type=dict)
    width, height = _size(size, "width"), _size(size, "height")
    depth = _size(size, "depth", required=False)
    parts = []
    for part in field(request, "parts", default_value=[], valid_type=list):
        parts.append({"id": field(part, "id", is_required=True, valid_type=int),
                      "count": field(part, "count", default_value=1, valid_type=int)})
    extra = field(request, "extra", valid_value=_anything)
    if name == TAKEN:
        raise ApiError(409, {"field": "name", "state": "taken"})
    return {"name": name, "sku": sku, "price": price, "quantity": quantity, "tags": tags,
            "color": color, "code": code, "kind": kind, "note": note, "gift": gift,
            "size": {"width": width, "height": height, "depth": depth}, "parts": parts,
            "extra": extra}


def read(request):
    """One item by id; only ids up to 100 exist."""
    item = field(request, "id", is_required=True, valid_type=int)
    if item > 100:
        raise ApiError(404)
    if "fields" in request:
        wanted = field(request, "fields", valid_type=list, valid_length=2)
        return {"id": item, "fields": wanted}
    return {"id": item}
