#!/usr/bin/env bash
# The llama-dashboard benchmarks: GGUF header parsing next to llama.cpp's Python reader and a
# 1,000-file catalog rescan (`gguf`), then the metrics sampler (`sampler`). Release build, one run
# each; the `gguf` bench uses python3 with the `gguf` package when present and says so when not.
# Last, the OpenAI-compatible proxy against the same upstream (the stand-in llama-server) directly.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p llama-dashboard --bench gguf
cargo bench -p llama-dashboard --bench sampler
cargo bench -p llama-dashboard --bench proxy
