"""The users target: POST /api/v0/users/create, read, update and delete, kept in PostgreSQL.

The table is migrations/0001_create_users.sql: ``apiphant db start .`` for a development
database, then ``apiphant db migrate .``. Without a database these answer 503 saying what
to set; echo needs none.
"""

import re

from apiphant import ApiError, db, field, status

#: A user as answered: the columns each query returns, in this order.
FIELDS = ("id", "email", "name", "created_at")
COLUMNS = ", ".join(FIELDS)
#: The most users one read answers; a page's default size.
PAGE_MAX, PAGE = 100, 20
#: An email address as a form checks one: something@something.something, no spaces.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
TAKEN = {"field": "email", "state": "taken", "explain": "a user with this email exists"}


def _user(row: tuple) -> dict:
    return dict(zip(FIELDS, row, strict=True))


def _email(request, required: bool) -> str | None:
    return field(request, "email", is_required=required, valid_type=str, max_length=254,
                 valid_value=EMAIL.fullmatch, explain="an email address like ann@example.com")


def _name(request, default: str | None) -> str | None:
    return field(request, "name", default_value=default, valid_type=str, max_length=100)


def _id(request) -> int:
    return field(request, "id", is_required=True, valid_type=int)


@status(201)
def create(request):
    """A new user: 201 with it, or 409 when its email (in any case) is another's."""
    email, name = _email(request, required=True), _name(request, "")
    try:
        with db.transaction() as conn:
            row = conn.execute(f"INSERT INTO users (email, name) VALUES (%s, %s) "
                               f"RETURNING {COLUMNS}", (email, name)).fetchone()
    except db.UniqueViolation:
        raise ApiError(409, TAKEN) from None
    return _user(row)


def read(request):
    """One user by ``id`` (404 when none), or a page: ``limit`` users with ids after
    ``after``, and ``next``, the ``after`` of the next page (null on the last)."""
    if "id" in request:
        with db.connection() as conn:
            row = conn.execute(f"SELECT {COLUMNS} FROM users WHERE id = %s",
                               (_id(request),)).fetchone()
        if row is None:
            raise ApiError(404)
        return _user(row)
    after = field(request, "after", default_value=0, valid_type=int)
    limit = field(request, "limit", default_value=PAGE, valid_type=int,
                  valid_value=lambda n: 1 <= n <= PAGE_MAX, explain=f"from 1 to {PAGE_MAX}")
    with db.connection() as conn:
        rows = conn.execute(f"SELECT {COLUMNS} FROM users WHERE id > %s ORDER BY id LIMIT %s",
                            (after, limit)).fetchall()
    users = [_user(row) for row in rows]
    return {"users": users, "next": users[-1]["id"] if len(users) == limit else None}


def update(request):
    """Change a user's ``email`` or ``name`` (what is absent stays): 404, 409 as create."""
    user_id, email, name = _id(request), _email(request, required=False), _name(request, None)
    try:
        with db.transaction() as conn:
            row = conn.execute(
                f"UPDATE users SET email = coalesce(%s, email), name = coalesce(%s, name) "
                f"WHERE id = %s RETURNING {COLUMNS}", (email, name, user_id)).fetchone()
    except db.UniqueViolation:
        raise ApiError(409, TAKEN) from None
    if row is None:
        raise ApiError(404)
    return _user(row)


def delete(request):
    """Delete a user and answer it as it was; 404 when there is none (deleted already)."""
    with db.transaction() as conn:
        row = conn.execute(f"DELETE FROM users WHERE id = %s RETURNING {COLUMNS}",
                           (_id(request),)).fetchone()
    if row is None:
        raise ApiError(404)
    return _user(row)
