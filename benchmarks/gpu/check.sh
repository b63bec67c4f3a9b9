#!/usr/bin/env bash
# One-command device check (issue 13): pgolf doctor, then pgolf vs the record scripts for baseline and
# sota on one GPU, same synthetic shards, same steps; JSON to $OUT (else benchmarks/results/).
#   bash benchmarks/gpu/check.sh            # on the GPU machine (≤ 8 min on one H100/H200)
#   bash benchmarks/gpu/check.sh --dry      # CPU rehearsal: tiny shapes, record scripts skipped
# Nothing is fetched: the system python's torch is used, zstandard/brotli/tomli-w come from wheels/.
# RECORDS_DIR points at the records (default ../shared/records); PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benchmarks/gpu
py=${PYTHON:-python3}
dry=0
for arg in "$@"; do [ "$arg" = "--dry" ] && dry=1; done
if [ "$dry" = 0 ] && [ -z "${PYTHON:-}" ]; then
  # a venv over the system site-packages (torch stays the preinstalled one), plus the carried wheels
  if [ ! -x "$here/_venv/bin/python" ]; then
    "$py" -m venv --system-site-packages "$here/_venv"
  fi
  py="$here/_venv/bin/python"
  "$py" -m pip install --quiet --no-index --find-links "$here/wheels" zstandard brotli tomli-w \
    || echo "check.sh: the carried wheels did not install for $("$py" -V); using what the system python has"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
echo "== pgolf doctor"
"$py" -m pgolf doctor
echo "== pgolf vs records"
exec "$py" -m pgolf.bench.gpu_check "$@"
