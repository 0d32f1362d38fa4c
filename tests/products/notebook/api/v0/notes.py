"""Notes: each create is one row (its token unique, so a create retried is never two rows)."""

from apiphant import ApiError, db, field


def create(request):
    token = field(request, "token", is_required=True, valid_type=str, max_length=200)
    with db.transaction() as conn:
        row = conn.execute(
            "INSERT INTO notes (token) VALUES (%s) ON CONFLICT (token) DO UPDATE "
            "SET token = EXCLUDED.token RETURNING id",
            (token,),
        ).fetchone()
    return {"id": row[0], "token": token}


def read(request):
    note = field(request, "id", is_required=True, valid_type=int)
    with db.connection() as conn:
        row = conn.execute("SELECT id, token FROM notes WHERE id = %s", (note,)).fetchone()
    if row is None:
        raise ApiError(404)
    return {"id": row[0], "token": row[1]}
