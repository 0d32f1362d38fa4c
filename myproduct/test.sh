#!/usr/bin/env bash
# myproduct's smoke test: test.py against a server started here, or against a URL.
#   ./test.sh                      start `apiphant . 127.0.0.1:8888`, run test.py, stop it
#   ./test.sh https://api.example.com   the same tests against a deployment
set -euo pipefail
exec "${PYTHON:-python3}" -m apiphant.smoke --product "$(cd "$(dirname "$0")" && pwd)" "$@"
