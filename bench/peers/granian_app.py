"""apiphant's own App (``create_app``) for granian's WSGI interface: the same routing,
validation and JSON as the `apiphant` command, under a Rust HTTP server.

``BENCH_PRODUCT`` names the product folder (default: myproduct; the I/O-bound
scenario serves bench/sleepy, whose handler sleeps in a granian thread).
"""

import os
from pathlib import Path

from apiphant.app import create_app

REPO = Path(__file__).resolve().parent.parent.parent

app = create_app(os.environ.get("BENCH_PRODUCT") or REPO / "myproduct")
