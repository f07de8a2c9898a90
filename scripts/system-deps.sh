#!/usr/bin/env bash
# Installs the OS packages Lockgate's tests and benchmarks drive (real clients and servers).
# Idempotent: does nothing when everything is already there.
set -euo pipefail
need=()
command -v psql >/dev/null || need+=(postgresql-client)
[ -x "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | head -n1)" ] || need+=(postgresql)
command -v pgbench >/dev/null || need+=(postgresql-contrib)
command -v openssl >/dev/null || need+=(openssl)
command -v runuser >/dev/null || need+=(util-linux)
# The benchmarks' baselines: PgBouncer in front of PostgreSQL, and OpenSSH for scp.
{ [ -x /usr/sbin/pgbouncer ] || command -v pgbouncer >/dev/null; } || need+=(pgbouncer)
{ [ -x /usr/sbin/sshd ] || command -v sshd >/dev/null; } || need+=(openssh-server)
command -v scp >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  echo "installing OS packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
