#!/usr/bin/env bash
# Builds the Envoy Go filter library: build/envoy-pubsub.so (or $OUT), then
# prints its path and the highest GLIBC symbol version it needs. Envoy's
# contrib image has glibc 2.35 (override the limit with MAX_GLIBC); a library
# that needs more would fail to load there, so the build fails instead.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$root/build/envoy-pubsub.so}"
case "$out" in
  /*) ;;
  *) out="$PWD/$out" ;;
esac
max_glibc="${MAX_GLIBC:-2.35}"

mkdir -p "$(dirname "$out")"
(cd "$root" && CGO_ENABLED=1 go build -buildmode=c-shared -trimpath -o "$out" ./cmd/envoy-pubsub)
rm -f "${out%.so}.h" # the C header c-shared writes is not needed by Envoy

if command -v objdump >/dev/null; then
  symbols="$(objdump -T "$out")"
elif command -v readelf >/dev/null; then
  symbols="$(readelf --dyn-syms -W "$out")"
else
  echo "build.sh: neither objdump nor readelf found (install binutils) to check glibc symbol versions" >&2
  exit 1
fi
needed="$(grep -o 'GLIBC_[0-9][0-9.]*' <<<"$symbols" | sed 's/^GLIBC_//' | sort -uV | tail -n 1)"
if [ -z "$needed" ]; then
  echo "build.sh: no GLIBC symbol versions found in $out" >&2
  exit 1
fi

echo "$out"
echo "highest GLIBC symbol version needed: GLIBC_$needed (limit GLIBC_$max_glibc)"
if [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -n 1)" != "$max_glibc" ]; then
  echo "build.sh: $out needs GLIBC_$needed, newer than GLIBC_$max_glibc in Envoy's contrib image; build on an older glibc" >&2
  exit 1
fi
