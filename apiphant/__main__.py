"""``python -m apiphant``: the same as the ``apiphant`` command."""

import sys

from apiphant.cli import main

sys.exit(main())
