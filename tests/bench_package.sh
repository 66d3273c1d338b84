#!/usr/bin/env bash
# Packaging benchmark (see tests/bench_package.py): release build, then N rows (default 1M and
# 3M) from pre-rendered CKAN pages into the local store, beside `zip -6` on the same CSV.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p sheaf >&2
exec python3 tests/bench_package.py "$@"
