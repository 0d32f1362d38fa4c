#!/usr/bin/env bash
# Smoke test: run PRODUCT/test.py against a server.
#   ./test.sh                      start `apiphant myproduct 127.0.0.1:8888`, test it, stop it
#   ./test.sh http://HOST[:PORT]   test a server that is already running (a deployment)
#   ./test.sh --product DIR ...    another product than myproduct
# Exits non-zero on any failure; shows the server log's tail when it started the server.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
product="$here/myproduct"
python=${PYTHON:-python3}
if [ "${1:-}" = "--product" ]; then
  [ $# -ge 2 ] || { echo "test.sh: --product needs a folder" >&2; exit 2; }
  product=$(cd "$2" && pwd) || { echo "test.sh: no such product folder: $2" >&2; exit 2; }
  shift 2
fi
[ -f "$product/test.py" ] || { echo "test.sh: no test.py in $product" >&2; exit 2; }

if [ $# -ge 1 ]; then
  APIPHANT_URL="$1" exec "$python" "$product/test.py"
fi

port=${APIPHANT_PORT:-8888}
log=$(mktemp "${TMPDIR:-/tmp}/apiphant-test.XXXXXX")
"$python" -m apiphant "$product" "127.0.0.1:$port" >"$log" 2>&1 &
server=$!
stop() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
fail() {
  echo "test.sh: $1; server log tail:" >&2
  tail -n 30 "$log" >&2
  rm -f "$log"
  exit 1
}
trap 'stop; rm -f "$log"' EXIT

ready=""
for _ in $(seq 1 100); do
  kill -0 "$server" 2>/dev/null || { trap - EXIT; wait "$server" || true; fail "the server exited"; }
  if "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2).close()" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[ -n "$ready" ] || { trap - EXIT; stop; fail "the server did not answer on 127.0.0.1:$port within 10s"; }

if APIPHANT_PORT="$port" APIPHANT_URL="" "$python" "$product/test.py"; then
  exit 0
fi
trap - EXIT
stop
fail "tests failed"
