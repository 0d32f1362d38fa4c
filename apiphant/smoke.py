"""``python -m apiphant.smoke``, which every product's test.sh runs; the smoke test lives in
``apiphant.testing.smoke``."""

import sys

from apiphant.testing.smoke import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    sys.exit(main())
