#!/usr/bin/env bash
# Client matrix: drive JetStream KV and object store through nats-py, nats.go
# and nats.js against one server binary.
#
#   tests/clients/run.sh SERVER_BIN [--cluster]
#
# Starts SERVER_BIN -js -sd <tmpdir> -a 127.0.0.1 -p <free port>, runs the
# three client programs against it, prints one line per client and a final
# "N passed, M failed" line, and exits non-zero if any client failed.
# With --cluster: three JetStream servers in one cluster (n1..n3, each listing
# every route), buckets with 3 replicas, each client on another server.
# Installs missing tools itself (apt, pip, npm); needs root for apt.
set -uo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ] || { [ $# -eq 2 ] && [ "$2" != --cluster ]; }; then
    echo "usage: $0 SERVER_BIN [--cluster]" >&2
    exit 2
fi
server_bin=$1
cluster=${2:+1}
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
server_pids=()
cleanup() {
    for pid in "${server_pids[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
    python3 - <<'EOF'
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
}

# start_server NAME ARGS...: runs the server and waits for it to listen on $port.
start_server() {
    local name=$1
    shift
    "$server_path" "$@" >"$tmp/$name.log" 2>&1 &
    local pid=$! up=
    server_pids+=("$pid")
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then up=1; break; fi
        sleep 0.1
    done
    if [ -z "$up" ]; then
        echo "FAILED: server $name did not listen on 127.0.0.1:$port; its log:"
        tail -n 30 "$tmp/$name.log"
        echo "0 passed, 3 failed"
        exit 1
    fi
}

urls=()
if [ -z "$cluster" ]; then
    port=$(free_port)
    [ -n "$port" ] || { echo "no free port found" >&2; exit 1; }
    start_server server -js -sd "$tmp/store" -a 127.0.0.1 -p "$port"
    urls=("nats://127.0.0.1:$port" "nats://127.0.0.1:$port" "nats://127.0.0.1:$port")
    replicas=1
else
    client_ports=() http_ports=() routes=()
    for i in 1 2 3; do
        client_ports+=("$(free_port)")
        http_ports+=("$(free_port)")
        routes+=("nats-route://127.0.0.1:$(free_port)")
    done
    for i in 1 2 3; do
        port=${client_ports[$((i - 1))]}
        route=${routes[$((i - 1))]}
        cat >"$tmp/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$port
http: 127.0.0.1:${http_ports[$((i - 1))]}
jetstream { store_dir: "$tmp/store-n$i" }
cluster {
  name: clients
  listen: ${route#nats-route://}
  routes: [ $(IFS=,; echo "${routes[*]}") ]
}
EOF
        start_server "n$i" -c "$tmp/n$i.conf"
        urls+=("nats://127.0.0.1:$port")
    done
    replicas=3
    # Clients start once every server knows the meta leader (a JetStream request
    # before it goes unanswered).
    if ! python3 - "${http_ports[@]}" <<'EOF'; then
import json, sys, time, urllib.request
deadline = time.monotonic() + 30
for port in sys.argv[1:]:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/jsz", timeout=2) as r:
                if json.load(r).get("meta_cluster", {}).get("leader"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f"no meta leader seen on the server with monitoring port {port}")
        time.sleep(0.1)
EOF
        echo "0 passed, 3 failed"
        exit 1
    fi
fi
log "server $server_path on ${urls[*]}, buckets of $replicas replicas"

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
    if REPLICAS=$replicas timeout 120 "$@" "$url" >"$out" 2>&1; then
        echo "$name: ok"
        passed=$((passed + 1))
    else
        echo "FAILED: $name (exit $?)"
        sed 's/^/    /' "$out"
        failed=$((failed + 1))
    fi
}

url=${urls[0]} run_client nats-py setup_py python3 "$here/py/kv_obj.py"
url=${urls[1]} run_client nats.go setup_go "$build/kv_obj_go"
url=${urls[2]} run_client nats.js setup_js node "$here/js/kv_obj.mjs"

if [ "$failed" -gt 0 ]; then
    for server_log in "$tmp"/*.log; do
        echo "--- $(basename "$server_log") (last 30 lines)"
        tail -n 30 "$server_log"
    done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
