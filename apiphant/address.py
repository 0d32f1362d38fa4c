"""Moved to ``apiphant.settings.values``: this name stays only until the deploy configuration,
which imports it, moves to the new path (an internal module, not an apiphant 0.2 path)."""

from apiphant.settings.values import AddressError, format_address, parse_address

__all__ = ["AddressError", "format_address", "parse_address"]
