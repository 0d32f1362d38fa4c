"""Moved: the server is ``apiphant.http.server``; this path keeps working (apiphant 1.0's
documented ``from apiphant.server import Server, Limits``).
"""

from apiphant.compat import moved
from apiphant.http.server import Limits, Server

__all__ = ["Limits", "Server"]

# 0.2.4/0.2.5's import path of the escape hatches: still works, warns once (apiphant.compat).
__getattr__ = moved(__name__, {"raw_environ": "apiphant.hatches:raw_environ",
                               "raw_response": "apiphant.hatches:raw_response"})  # fmt: skip
