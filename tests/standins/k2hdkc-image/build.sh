#!/usr/bin/env bash
# Builds the k2hdkc STAND-IN test image: static binaries, FROM scratch.
# Usage: build.sh [TAG]   (default k2hdkc-standin:test)
set -euo pipefail
cd "$(dirname "$0")"
tag=${1:-k2hdkc-standin:test}
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu
mkdir -p bin
cp target/x86_64-unknown-linux-gnu/release/chmpx target/x86_64-unknown-linux-gnu/release/k2hdkc bin/
docker build --quiet --tag "$tag" . >/dev/null
echo "built $tag"
