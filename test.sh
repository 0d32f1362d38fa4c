#!/usr/bin/env bash
# Smoke test: run PRODUCT/test.py against a server (apiphant/smoke.py does the work).
#   ./test.sh                      start `apiphant myproduct 127.0.0.1:8888`, test it, stop it
#   ./test.sh http://HOST[:PORT]   test a server that is already running (a deployment)
#   ./test.sh --product DIR ...    another product than myproduct
# Exits non-zero on any failure; shows the server log's tail when it started the server.
# APIPHANT_PORT and PYTHON override the port and the interpreter.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
product="$here/myproduct"
if [ "${1:-}" = "--product" ]; then
  [ $# -ge 2 ] || { echo "test.sh: --product needs a folder" >&2; exit 2; }
  product=$2
  shift 2
fi
exec "${PYTHON:-python3}" -m apiphant.smoke --product "$product" "$@"
