"""The docs page, ``/api/docs``: Swagger UI from a Python package, never from a CDN.

Its files come from ``swagger-ui-bundle-v2`` (apiphant's ``docs`` extra: Swagger UI 5,
which reads OpenAPI 3.1), so the page works with no network. Without the package, the page
says in one line what to install; the document itself needs nothing.
"""

import html
from pathlib import Path

#: The docs page's files, served under ``/api/docs/``, with their content types.
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
          "swagger-ui.css": "text/css; charset=utf-8",
          "init.js": "text/javascript; charset=utf-8"}  # fmt: skip
#: What to install when Swagger UI's files are missing.
INSTALL = "pip install 'apiphant[docs]'"
#: The page's scripts are its own files (no inline script); Swagger UI styles inline.
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
          "img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'")
#: Starts Swagger UI on the document beside the page (relative: it works behind a prefix).
INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true, validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis], layout: "BaseLayout"
  });
});
"""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script><script src="docs/init.js"></script>
</body></html>
"""
MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title></head>
<body><p>This page needs Swagger UI's files: %(install)s. The OpenAPI document is at
<a href="openapi.json">openapi.json</a>.</p></body></html>
"""


def folder() -> Path | None:
    """Swagger UI's files, or None when swagger-ui-bundle-v2 is not installed."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    found = Path(str(swagger_ui_path))
    return found if (found / "swagger-ui-bundle.js").is_file() else None


def page(title: str, files: Path | None) -> bytes:
    """The page itself, or the line saying what to install."""
    shown = {"title": html.escape(f"{title}: API"), "install": html.escape(INSTALL)}
    return ((PAGE if files is not None else MISSING) % shown).encode()


def asset(name: str, files: Path | None) -> bytes | None:
    """One of ASSETS' bytes; None when it is missing."""
    if name == "init.js":
        return INIT.encode()
    if files is None or name not in ASSETS:
        return None
    return (files / name).read_bytes()
