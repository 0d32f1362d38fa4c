#!/usr/bin/env bash
# Smoke test of the example product: myproduct/test.sh, which finds the Python with apiphant
# itself (PYTHON, else this checkout's .venv, ...), starts a server, runs test.py, stops it.
#   ./test.sh                      start `apiphant serve myproduct 127.0.0.1:8888`, test it
#   ./test.sh http://HOST[:PORT]   test a server that is already running (a deployment)
#   ./test.sh --product DIR ...    another product than myproduct (the last --product wins)
# Exits non-zero on any failure; shows the server log's tail when it started the server.
# APIPHANT_PORT and PYTHON override the port and the interpreter.
exec "$(cd "$(dirname "$0")" && pwd)/myproduct/test.sh" "$@"
