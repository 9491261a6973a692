#!/usr/bin/env bash
# Regenerates pubsub.pb.go from pubsub.proto with protoc and the protoc-gen-go
# version pinned in go.mod (a `tool` dependency). Installs protoc from Debian's
# protobuf-compiler package when it is missing. OUT_DIR (default: this
# folder) is where the Go file is written.
set -euo pipefail
cd "$(dirname "$0")"
out=${OUT_DIR:-.}
if ! command -v protoc >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
protoc -I . --plugin=protoc-gen-go="$bin/protoc-gen-go" \
  --go_out="$out" --go_opt=paths=source_relative pubsub.proto
