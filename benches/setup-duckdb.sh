#!/usr/bin/env bash
# Installs the DuckDB Python package into a virtual environment of its own
# (benches/.duckdb-venv, ignored by git) for the comparison benchmarks, if it
# is missing. Prints the environment's python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.duckdb-venv"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q duckdb >&2
fi
echo "$venv/bin/python"
