#!/usr/bin/env bash
# Start command of a veFaaS web-server function (and of any VM or container, and of `make run`): the
# relay under gunicorn with gunicorn.conf.py (request limits, body timeouts, no access log), on the
# port the platform gives (_FAAS_RUNTIME_PORT, or _BYTEFAAS_RUNTIME_PORT, else 8000) and HOST.
# One worker by default: Flashduty's limits per integration are kept per process.
set -euo pipefail
cd "$(dirname "$0")"
exec "${PYTHON:-python3}" -m gunicorn --config gunicorn.conf.py \
  "functions_framework:create_app(target='relay', source='main.py')"
