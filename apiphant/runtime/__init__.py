"""apiphant's process plumbing: what its commands share to start, run and stop.

Internal: no public API. ``usage`` (one-line errors and exit codes), ``lifecycle`` (signals,
Sentry, the wait), and the pieces both the server and the background runner use.
"""
