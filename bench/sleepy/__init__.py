"""The bench's I/O-bound product: the echo, after a 50 ms wait, as a handler calling a database."""
