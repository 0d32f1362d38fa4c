"""The deploy kit: ``fab deploy --product=myproduct HOST`` to Supervisor and Nginx.

Layers, each usable alone:

- ``config``: PRODUCT/deploy.toml into frozen dataclasses, one-line errors.
- ``roles``: what each role needs (deploy/roles/*.toml).
- ``render``: config into files, Jinja2 with StrictUndefined; pure.
- ``commands`` and ``plan``: the deploy as a list of printable steps; pure.
- ``artifacts``: the local build (a wheel of apiphant, the release tarball).
- ``runner``: runs the steps over Fabric connections, or prints them (--dry-run).
- ``tasks``: what the fabfile's tasks call.

The kit runs from a checkout of apiphant: roles and templates are read from
the checkout's ``deploy/`` folder, the smoke test is its ``test.sh``.
"""

import os
from pathlib import Path

#: The checkout this package lives in.
CHECKOUT = Path(__file__).resolve().parents[2]


def kit_path() -> Path:
    """Where roles/ and templates/ are: APIPHANT_DEPLOY_KIT, else the checkout's deploy/."""
    return Path(os.environ.get("APIPHANT_DEPLOY_KIT") or CHECKOUT / "deploy")
