#!/usr/bin/env bash
# Installs PostgreSQL 15 from Debian for the comparison benchmarks, if it is missing.
set -euo pipefail
if [ -x /usr/lib/postgresql/15/bin/postgres ]; then
  echo "PostgreSQL 15 is installed."
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql-15 >/dev/null
echo "PostgreSQL 15 installed."
