"""The in-process test client's documented path; it lives in ``apiphant.testing.client``."""

from apiphant.testing.client import Client, Result

__all__ = ["Client", "Result"]
