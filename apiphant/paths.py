"""apiphant 0.2's ``apiphant.paths.init_paths``: kept in ``apiphant.compat.v02``; it warns."""

from apiphant.compat.v02 import init_paths

__all__ = ["init_paths"]
