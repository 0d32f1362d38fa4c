"""apiphant 0.2's path of the one-line functional tests; they live in
``apiphant.testing.functional``. The same objects: ``config.port = ...`` here is what
``test()`` reads."""

from apiphant.testing.functional import DEFAULT_PORT, base_url, config, counts, test, url

__all__ = ["DEFAULT_PORT", "base_url", "config", "counts", "test", "url"]
