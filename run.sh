#!/usr/bin/env bash
# Start command of a veFaaS web-server function (and of any VM or container): the relay under
# gunicorn, through functions-framework, on the port the platform gives.
# One worker by default: the 100 requests/s limit per integration is kept per process.
set -euo pipefail
cd "$(dirname "$0")"
export WORKERS="${WORKERS:-1}" THREADS="${THREADS:-16}"
exec "${PYTHON:-python3}" -m functions_framework --target=relay --source=main.py \
  --host=0.0.0.0 --port="${_FAAS_RUNTIME_PORT:-${_BYTEFAAS_RUNTIME_PORT:-8000}}"
