#!/usr/bin/env bash
# cpm's serve benchmark: installs git and the OpenSSH client (ssh, ssh-keygen) if missing, then
# runs the release-mode benchmark, which times clones and pushes through `cpm serve` next to plain
# git on the same host in the same run. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null 2>&1 || missing+=(git)
{ command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; } || missing+=(openssh-client)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo bench -p cpm --bench serve
