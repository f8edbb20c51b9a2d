#!/usr/bin/env bash
# Client matrix: drive JetStream KV and object store through nats-py, nats.go
# and nats.js against one server binary.
#
#   tests/clients/run.sh SERVER_BIN
#
# Starts SERVER_BIN -js -sd <tmpdir> -a 127.0.0.1 -p <free port>, runs the
# three client programs against it, prints one line per client and a final
# "N passed, M failed" line, and exits non-zero if any client failed.
# Installs missing tools itself (apt, pip, npm); needs root for apt.
set -uo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 SERVER_BIN" >&2
    exit 2
fi
server_bin=$1
if ! server_path=$(command -v "$server_bin"); then
    echo "server binary not found: $server_bin" >&2
    exit 2
fi
case $server_path in /*) ;; *) server_path=$PWD/$server_path ;; esac

here=$(cd "$(dirname "$0")" && pwd)
build=$here/.build # git-ignored
mkdir -p "$build"

log() { echo "[clients] $*" >&2; }

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        log "apt-get update"
        apt-get update -qq >&2 || return 1
        apt_updated=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# --- per-client setup: progress on stderr, non-zero on failure

setup_py() {
    python3 -c 'import nats.js.kv' 2>/dev/null && return 0
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip || return 1
    fi
    log "pip install nats-py==2.16.0"
    # Debian's python is "externally managed" (PEP 668); pip >= 23 honours this
    # variable, older pips ignore it.
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q nats-py==2.16.0 >&2 || return 1
}

gosrc=/usr/share/gocode/src/github.com/nats-io/nats.go
setup_go() {
    local pkgs=()
    command -v go >/dev/null || pkgs+=(golang-go)
    [ -d "$gosrc" ] || pkgs+=(golang-github-nats-io-go-nats-dev)
    if [ ${#pkgs[@]} -gt 0 ]; then
        apt_install "${pkgs[@]}" || return 1
    fi
    # Offline GOPATH build against Debian's packaged sources (nats.go, nkeys,
    # nuid, x/crypto); no module proxy is consulted.
    (cd "$here/go" && GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off CGO_ENABLED=0 \
        GOCACHE="${GOCACHE:-$build/gocache}" go build -o "$build/kv_obj_go" .) >&2
}

setup_js() {
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        local pkgs=()
        command -v node >/dev/null || pkgs+=(nodejs)
        command -v npm >/dev/null || pkgs+=(npm)
        apt_install "${pkgs[@]}" || return 1
    fi
    [ -f "$here/js/node_modules/nats/package.json" ] && return 0
    log "npm ci (nats.js)"
    (cd "$here/js" && npm ci --no-audit --no-fund --loglevel=error) >&2
}

# --- server

command -v python3 >/dev/null || apt_install python3 || exit 1

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null
        wait "$server_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randint(10000, 32767)
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            continue
        print(p)
        break
EOF
)
[ -n "$port" ] || { echo "no free port found" >&2; exit 1; }

"$server_path" -js -sd "$tmp/store" -a 127.0.0.1 -p "$port" >"$tmp/server.log" 2>&1 &
server_pid=$!
up=
for _ in $(seq 100); do
    kill -0 "$server_pid" 2>/dev/null || break
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "FAILED: server did not listen on 127.0.0.1:$port; its log:"
    tail -n 30 "$tmp/server.log"
    echo "0 passed, 3 failed"
    exit 1
fi
url=nats://127.0.0.1:$port
log "server $server_path on $url"

# --- clients

passed=0
failed=0
run_client() { # name setup_fn command...
    local name=$1 setup=$2 out=$tmp/$1.out
    shift 2
    if ! $setup; then
        echo "FAILED: $name (setup, see the messages above)"
        failed=$((failed + 1))
        return
    fi
    if timeout 120 "$@" "$url" >"$out" 2>&1; then
        echo "$name: ok"
        passed=$((passed + 1))
    else
        echo "FAILED: $name (exit $?)"
        sed 's/^/    /' "$out"
        failed=$((failed + 1))
    fi
}

run_client nats-py setup_py python3 "$here/py/kv_obj.py"
run_client nats.go setup_go "$build/kv_obj_go"
run_client nats.js setup_js node "$here/js/kv_obj.mjs"

if [ "$failed" -gt 0 ]; then
    echo "--- server log (last 30 lines)"
    tail -n 30 "$tmp/server.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
