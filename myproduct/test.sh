#!/usr/bin/env bash
# myproduct's smoke test: test.py against a server started here, or against a URL.
#   ./test.sh                      start `apiphant serve . 127.0.0.1:8888`, run test.py, stop it
#   ./test.sh https://api.example.com   the same tests against a deployment
# No virtualenv to activate: the Python is $PYTHON, else the first of these that has apiphant:
# .venv here, .venv in the folder above, the one that runs `apiphant` on PATH, python3.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
  candidates=("$here/.venv/bin/python" "$here/../.venv/bin/python")
  if command -v apiphant >/dev/null; then
    candidates+=("$(dirname "$(command -v apiphant)")/python")
  fi
  candidates+=(python3)
  for candidate in "${candidates[@]}"; do
    if (cd / && "$candidate" -c "import apiphant") >/dev/null 2>&1; then
      python=$candidate
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "test.sh: no Python with apiphant here (.venv, ../.venv, apiphant on PATH, python3):" \
    "make .venv with apiphant installed, or set PYTHON=/path/to/venv/bin/python" >&2
  exit 2
fi
exec "$python" -m apiphant.smoke --product "$here" "$@"
