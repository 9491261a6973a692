#!/usr/bin/env bash
# Runs every test of the project: vet, the unit, integration, ABI and config
# layers with the race detector, the benchmark module's own tests, and a short
# fuzzing pass. Needs Go and gcc; installs protoc (Debian's protobuf-compiler)
# when it can, so that the generated-code check runs too. The e2e layer skips
# without a Docker engine.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v protoc >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "test.sh: installing protoc for the generated-code check"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null) ||
    echo "test.sh: could not install protoc; the generated-code check will skip"
fi

echo "test.sh: go vet"
go vet ./...
# The benchmark is a module of its own (bench/go.mod), outside ./... of the gateway's.
(cd bench && go vet ./...)

echo "test.sh: go test"
go test -race -count=1 -timeout 20m ./...
(cd bench && go test -race -count=1 -timeout 5m ./...)

echo "test.sh: fuzzing"
go test -run '^$' -fuzz '^FuzzRequest$' -fuzztime 10s ./pubsub/
go test -run '^$' -fuzz '^FuzzFrameStream$' -fuzztime 10s ./pubsub/
