"""apiphant: a small, fast framework for JSON web APIs on gevent.

A product is a folder; ``PRODUCT/api/vN/<target>.py`` defines create, read,
update and delete, served at ``POST /api/vN/<target>/<action>``.
"""

__version__ = "1.0.0"
