#!/usr/bin/env bash
# The test command: sets up a fresh machine (virtualenv, Python packages, server binaries, a
# headless browser) and runs the linters, the type checker, the documentation build and the
# whole test suite. The tests start the Redis and PostgreSQL servers they need themselves (see
# tests/servers.py).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

apt_install() {
    # Install Debian packages only when a binary is missing; needs root (as on CI).
    local missing=()
    for spec in "$@"; do
        local bin=${spec%%:*} pkg=${spec##*:}
        command -v "$bin" >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/"$bin" >/dev/null 2>&1 \
            || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} from Debian packages"
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Chromium and its WebDriver: tests/test_browser.py drives the chat example in a real browser.
apt_install redis-server:redis-server initdb:postgresql chromium:chromium chromedriver:chromium-driver

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[all,test,docs]" 2>&1 | grep -v '^WARNING: Location' || true
"$VENV/bin/python" -c "import trio_ruts, pytest_trio, selenium, sphinx" # fail loudly if the install did not work

# A Redis 7.4 (HEXPIRE) next to the system's Redis; if it cannot be had, say so: the tests then
# skip the 7.4 kit loudly (and fail under CI=true, where it must work).
echo "== preparing Redis 7.4 for the tests"
bash scripts/redis74.sh || echo "WARNING: no Redis 7.4 server for this run (see above)"

echo "== ruff check";        "$VENV/bin/ruff" check .
echo "== ruff format";       "$VENV/bin/ruff" format --check .
echo "== mypy (strict)";     "$VENV/bin/mypy"
# The documentation site, warnings as errors: a broken reference, a docs/*.md page missing from
# docs/index.md, or a public name missing from the API reference fails the run.
echo "== docs (sphinx)";     "$VENV/bin/sphinx-build" -W --keep-going -n -E -q -b html docs build/docs
echo "== pytest";            "$VENV/bin/python" -m pytest "$@"
