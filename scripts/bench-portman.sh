#!/usr/bin/env bash
# portman's benchmark: installs `ss` (iproute2) and `lsof` if missing, so scan is compared with them
# on the same host in the same run, then runs the release-mode benchmark. Prints figures; asserts
# nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
command -v lsof >/dev/null 2>&1 || missing+=(lsof)
if [ ${#missing[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
cargo bench -p portkeeper --bench cli
