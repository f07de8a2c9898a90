#!/usr/bin/env bash
# Installs what `make setup` needs to build Lockgate's C extension (the PostgreSQL fast path):
# a C compiler and zlib's headers. Idempotent: does nothing when both are there.
set -euo pipefail
need=()
command -v cc >/dev/null || need+=(gcc)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing OS packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
