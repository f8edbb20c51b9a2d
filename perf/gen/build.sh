#!/usr/bin/env bash
# Builds jsgen (perf/gen/main.go) OFFLINE against Debian's packaged nats.go: no Go module
# proxy is needed. GOPATH mode (GO111MODULE=off) with /usr/share/gocode on GOPATH, where
# golang-github-nats-io-go-nats-dev (nats.go 1.22.1 on Debian 12) and its dependencies
# (nkeys, nuid, x/crypto) live. Installs golang-go and that package if missing.
# Output: perf/out/bin/jsgen (perf/out/ is git-ignored).
# Usage: perf/gen/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../out/bin"
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/github.com/nats-io/nats.go ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-github-nats-io-go-nats-dev >/dev/null
fi
mkdir -p "$out" "$here/../out/gocache"
cd "$here"
GO111MODULE=off GOPATH="$here/../out/gopath:/usr/share/gocode" \
    GOCACHE="${GOCACHE:-$here/../out/gocache}" GOPROXY=off \
    go build -o "$out/jsgen" .
echo "$out/jsgen"
