"""0.2.x's ``apiphant.paths.init_paths``, kept for products that call it; it warns once.

The product folder is located (and made importable) by apiphant.product.locate now.
"""

import warnings
from pathlib import Path

from apiphant.product import locate

_warned = False


def init_paths(product_path: str | Path) -> tuple[str, str]:
    """0.2: ``(api_path, product_name)``, the product's parent put on sys.path."""
    global _warned
    if not _warned:
        _warned = True
        warnings.warn("apiphant.paths.init_paths moved to apiphant.product.locate",
                      DeprecationWarning, stacklevel=2)  # fmt: skip
    product = locate(product_path)
    return str(product.api_path), product.name
