#!/usr/bin/env bash
# The one-call GPU check of issue 17 (`make gpu-check`): on one H100/H200 in under 8
# minutes, the training bench at 360m and 1.7b, then specs/gpu/gpu-360m.yaml through every
# `repro stage` from its data to train -> evaluate; one JSON summary, continuing past a
# failed part (scripts/gpu_check.py does the work; this wrapper prepares Python).
#
#   scripts/gpu-check.sh [--out DIR] [--device cuda|cpu] [--size gpu|tiny] [...]
#
# Needs a CUDA torch (with triton) and transformers + accelerate, as the GPU image has. What
# else the check imports (pydantic, datatrove, trafilatura, lm-eval, datasets ...; listed in
# scripts/gpu-wheels*.txt) travels as wheels in .gpu-wheels/ (`make gpu-wheels` on a machine
# with pip access; ~45 MB): when they are not importable, they are installed with
# `pip install --no-index --no-deps --target` into a scratch folder put on PYTHONPATH; the
# repository itself is used in place (no install). DIR defaults to $OUT where that is set
# (the lent GPU machine's result folder), else gpu-check-out/.
# CPU rehearsal (minutes): scripts/gpu-check.sh --device cpu --size tiny --out /tmp/gc
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && ! python3 -c "import torch" 2>/dev/null; then
  PY=.venv/bin/python
fi
WHEELS="${GPU_CHECK_WHEELS:-.gpu-wheels}"
SITE="${GPU_CHECK_SITE:-${TMPDIR:-/tmp}/repro-gpu-check-site}"

if ! "$PY" -c "import pydantic, datatrove, trafilatura, lm_eval, datasets, sqlitedict" 2>/dev/null; then
  if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$WHEELS"/*.whl || echo "warning: pip install from $WHEELS failed; the parts that need them will fail"
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "warning: pydantic/datatrove/lm-eval are not importable and $WHEELS/ holds no wheels" \
         "(run \`make gpu-wheels\` and carry $WHEELS); the parts that need them will fail"
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

args=("$@")
case " $* " in
  *" --out "*|*" --out="*) ;;
  *) args+=(--out "${OUT:-gpu-check-out}") ;;
esac
exec "$PY" scripts/gpu_check.py "${args[@]}"
