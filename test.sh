#!/usr/bin/env bash
# Runs every test of the project: vet, the unit, integration, ABI and config
# layers with the race detector, the benchmark module's own tests, the
# TypeScript client's tests and the live page's tests in headless Chromium, and
# a short fuzzing pass; first it fails when git tracks a non-source file over
# 1 MB (.ci/large-files). Needs Go, gcc, Node 20+ and npm; installs protoc
# (Debian's protobuf-compiler) and Chromium with apt when it can (as root), so
# that the generated-code checks and the browser tests run too. The e2e layer
# skips without a Docker engine.
set -euo pipefail
cd "$(dirname "$0")"

can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }
apt_updated=
apt_install() {
  if [ -z "$apt_updated" ]; then apt-get update -qq && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! command -v protoc >/dev/null 2>&1 && can_apt; then
  echo "test.sh: installing protoc for the generated-code check"
  apt_install protobuf-compiler || echo "test.sh: could not install protoc; the generated-code check will skip"
fi
if ! command -v chromium >/dev/null 2>&1 && can_apt; then
  echo "test.sh: installing chromium for the browser tests"
  apt_install chromium || echo "test.sh: could not install chromium; the browser tests will fail in CI"
fi

echo "test.sh: no large non-source file is tracked"
.ci/large-files

echo "test.sh: go vet"
go vet ./...
# The benchmark is a module of its own (bench/go.mod), outside ./... of the gateway's.
(cd bench && go vet ./...)

echo "test.sh: go test"
go test -race -count=1 -timeout 20m ./...
(cd bench && go test -race -count=1 -timeout 5m ./...)

echo "test.sh: TypeScript client and browser tests (clients/js)"
(cd clients/js && npm ci --no-audit --no-fund --loglevel=error && npm test)

echo "test.sh: fuzzing"
go test -run '^$' -fuzz '^FuzzRequest$' -fuzztime 10s ./pubsub/
go test -run '^$' -fuzz '^FuzzFrameStream$' -fuzztime 10s ./pubsub/
go test -run '^$' -fuzz '^FuzzRecordsReply$' -fuzztime 10s ./kafka/
