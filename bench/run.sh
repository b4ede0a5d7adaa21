#!/usr/bin/env bash
# The benchmark suite, from a fresh machine: a virtualenv of its own (bench/.venv) with the
# clinic's requirements and bench/requirements.txt (Celery, the Redis client, aiosmtpd,
# pyinstrument), then `python -m bench` with whatever arguments were given. Figures go into
# BENCHMARKS.md; raw results into bench/results/.
#
# Needs a Redis server on 127.0.0.1:6379 for the peer (apt-get install -y redis-server) and wrk
# for the page rates (apt-get install -y wrk); without them those rows say why they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
fi
bench/.venv/bin/pip install -q -r requirements.txt -r bench/requirements.txt
exec bench/.venv/bin/python -m bench "$@"
