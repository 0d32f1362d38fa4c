"""A nested target: POST /api/v0/users/settings/read and /update.

It keeps no state: behind Nginx, consecutive requests may reach different
workers, so a real product keeps settings in its database.
"""

from apiphant.validation import field

DEFAULTS = {"theme": "light", "language": "en"}


def read(request):
    user_id = field(request, "user_id", is_required=True, valid_type=int)
    return {"user_id": user_id, "settings": dict(DEFAULTS)}


def update(request):
    """Validate a partial update and answer the settings it would leave."""
    user_id = field(request, "user_id", is_required=True, valid_type=int)
    changes = field(request, "settings", is_required=True, valid_type=dict)
    theme = field(changes, "theme", valid_value={"light", "dark"}, explain="light or dark")
    language = field(changes, "language", valid_type=str, max_length=8)
    settings = dict(DEFAULTS)
    settings.update({k: v for k, v in (("theme", theme), ("language", language)) if v is not None})
    return {"user_id": user_id, "settings": settings}
