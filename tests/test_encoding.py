"""What a handler may return: the types JSON lacks, encoded by one rule on every path."""

import dataclasses
import datetime
import decimal
import enum
import logging
import uuid

import pytest

from apiphant.client import Client
from apiphant.encoding import encode

RETURNS = """
import dataclasses, datetime, decimal, enum, uuid

class Colour(enum.Enum):
    RED = "red"

@dataclasses.dataclass
class Item:
    id: int
    at: datetime.date

def read(request):
    return {
        "when": datetime.datetime(2026, 11, 24, 15, 16, 20, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2026, 11, 24), "time": datetime.time(15, 16, 20),
        "price": decimal.Decimal("19.90"), "id": uuid.UUID(int=1),
        "tags": {"b", "a"}, "frozen": frozenset({3, 1, 2}), "colour": Colour.RED,
        "item": Item(7, datetime.date(2026, 1, 2)),
    }

def create(request):
    return {"bad": object()}
"""

EXPECTED = {
    "when": "2026-11-24T15:16:20+00:00", "day": "2026-11-24", "time": "15:16:20",
    "price": "19.90", "id": "00000000-0000-0000-0000-000000000001",
    "tags": ["a", "b"], "frozen": [1, 2, 3], "colour": "red",
    "item": {"id": 7, "at": "2026-01-02"},
}  # fmt: skip


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc") / "encshop"
    (root / "api/v0").mkdir(parents=True)
    for init in ("", "api", "api/v0"):
        (root / init / "__init__.py").write_text("")
    (root / "api/v0/typed.py").write_text(RETURNS)
    return root


def test_the_common_types_are_encoded_as_fastapi_and_flask_users_expect(product):
    result = Client(product).post("typed", "read", {})
    assert (result.status, result.json) == (200, EXPECTED)


def test_an_unknown_type_is_a_500_whose_log_names_the_type(product, caplog):
    with caplog.at_level(logging.ERROR):
        result = Client(product).post("typed", "create", {})
    assert (result.status, result.json) == (500, {"error": "500 Internal Server Error"})
    assert "Object of type object is not JSON serializable" in caplog.text


def test_errors_and_hooks_go_through_the_same_rule(make_product):
    root = make_product({
        "api/v0/t.py": """
            import datetime
            from apiphant.errors import ApiError
            def read(request):
                raise ApiError(409, {"since": datetime.date(2026, 1, 1)})
            def create(request):
                return {"hooked": True}
        """,
        "api/hooks.py": """
            import decimal
            def before(request, http):
                pass
            def after(request, http, response):
                return {"total": decimal.Decimal("1.10")}
        """,
    }, name="encrules")
    client = Client(root)
    assert client.post("t", "read").json == {"error": {"since": "2026-01-01"}}
    assert client.post("t", "create").json == {"total": "1.10"}


class Plain(enum.IntEnum):
    ONE = 1


@dataclasses.dataclass
class Nested:
    when: datetime.datetime
    ids: set


def test_the_rule_itself():
    assert encode({"n": Plain.ONE, "x": Nested(datetime.datetime(2026, 1, 2, 3, 4, 5), {2, 1})}
                  ) == '{"n": 1, "x": {"when": "2026-01-02T03:04:05", "ids": [1, 2]}}'
    assert encode([decimal.Decimal("1E+2"), uuid.UUID(int=0).hex]) == (
        '["1E+2", "00000000000000000000000000000000"]')
    assert sorted(encode({"mixed": {1, "a"}})[11:-2].split(", ")) == ['"a"', "1"]
    with pytest.raises(TypeError, match="Object of type Nested is not JSON serializable"):
        encode({"class": type("Nested", (), {})()})
    with pytest.raises(ValueError):
        encode({"x": float("nan")})
