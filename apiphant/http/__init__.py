"""apiphant's HTTP/1.1 server, in the order a request goes through it.

- ``parser``: bytes in, requests out (llhttp through httptools, plus our own
  refusals); pure, no socket, no gevent.
- ``response``: status lines, headers and error answers as bytes; pure.
- ``wsgi``: the WSGI environ, ``wsgi.input`` and ``start_response``.
- ``connection``: one connection's greenlet: read, parse, admit, call the
  application, send, keep alive or close with a lingering close.
- ``server``: the listening socket, the limits and the drain (``apiphant.server``
  is its old path, still working).
"""
