#!/usr/bin/env bash
# Builds the k2hdkc STAND-IN test image (static binaries, FROM scratch).
# Usage: build.sh [TAG]   (default k2hdkc-standin:test)
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
tag=${1:-k2hdkc-standin:test}
target=x86_64-unknown-linux-gnu
programs=(chmpx k2hdkc k2hlinetool)

cd -- "$here"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --quiet --target "$target"
mkdir -p bin
for p in "${programs[@]}"; do
    cp -- "target/$target/release/$p" "bin/$p"
    # An image FROM scratch has no loader: every binary must be static.
    if ! file -- "bin/$p" | grep -Eq 'statically linked|static-pie linked'; then
        echo "build.sh: bin/$p is not statically linked" >&2
        exit 1
    fi
done
docker build --quiet --tag "$tag" . >/dev/null
echo "built $tag"
