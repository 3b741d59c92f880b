#!/bin/sh
# The Portunus control-plane benchmark: API latency under concurrent load, and audit throughput
# through the batching writer next to raw batched SQLite inserts. Release build, one run each.
set -eu
cd "$(dirname "$0")/.."
cargo bench -p portunus-server --bench api
cargo bench -p portunus-server --bench audit
