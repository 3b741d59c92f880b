#!/usr/bin/env bash
# The llama-dashboard benchmarks: GGUF header parsing next to llama.cpp's Python reader and a
# 1,000-file catalog rescan (`gguf`), then the metrics sampler (`sampler`). Release build, one run
# each; the `gguf` bench uses python3 with the `gguf` package when present and says so when not.
# Last, the OpenAI-compatible proxy against the same upstream (the stand-in llama-server) directly
# and through nginx as a reference proxy, which this script installs if missing (Debian's nginx;
# the bench starts its own instance on a free loopback port and stops it).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! [ -x /usr/sbin/nginx ] && ! [ -x /usr/bin/nginx ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends nginx
  # Only the bench's own instance is wanted: stop the default site a service manager started.
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl disable --now nginx >/dev/null 2>&1 || true; fi
fi
cargo bench -p llama-dashboard --bench gguf
cargo bench -p llama-dashboard --bench sampler
cargo bench -p llama-dashboard --bench proxy
