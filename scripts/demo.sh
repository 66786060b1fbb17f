#!/usr/bin/env bash
# The main job: the counter demo (examples/counter.py) on the embedded MemoryStore.
# Sets up the virtualenv on a fresh machine; extra arguments go to the demo (--host, --port).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -c "import trio_ruts.quart" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[quart]" 2>&1 \
        | grep -v '^WARNING: Location' || true
exec "$VENV/bin/python" examples/counter.py "$@"
