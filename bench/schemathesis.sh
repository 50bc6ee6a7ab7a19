#!/usr/bin/env bash
# The API contract under schemathesis, every check (no 5xx; status codes, content types, bodies and headers
# as documented; schema-valid data accepted, invalid data refused; auth enforced; 405s with Allow), on every
# operation without the key and with it, POST /train included (JSON and multipart; jobs are only queued).
# Refusals that depend on several values together, which no JSON schema can state, are listed once in
# tests/app/test_property.py (DATA_DEPENDENT). New random cases each run (CI runs a fixed set). Prints
# pytest's summary; exit 0 when the contract holds.
#
#   bench/schemathesis.sh          # 300 examples per operation and run
#   bench/schemathesis.sh 1000     # more
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTRACT_EXAMPLES="${1:-300}"
export CONTRACT_RANDOM=1  # new cases every run (CI runs a fixed set)
exec python -m pytest -q -p no:cacheprovider tests/app/test_property.py tests/app/test_property_train.py
