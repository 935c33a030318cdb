#!/usr/bin/env bash
# The GPU figures in one command (issue 19): step time and fraction of device-to-device copy
# bandwidth for torch, ours (Triton float32, 8-bit) and bitsandbytes' 8-bit RMSprop on
# 1 x 64M, 64 x 1M and 4000 x 4k; writes gpu_step_time.json and gpu_step_time.md.
#
#   benchmarks/gpu.sh [--install] [--out DIR] [options of python -m rmsprop.benchmark.gpu]
#
# It runs the repository's own source (PYTHONPATH=src) and installs nothing unless torch or
# numpy cannot be imported (then, or with --install: pip install -e ".[test]", the test extra
# and nothing else). It says which packages are missing; a contender whose package is
# missing is a "not supported" row. Runs in under 8 minutes (a 420 s budget for the timed
# cases); "--device cpu --quick" is a dry run on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

install=0
args=()
for arg in "$@"; do
    if [[ $arg == --install ]]; then install=1; else args+=("$arg"); fi
done

# Prints "missing: ..." (packages that cannot be imported) and "cuda: NAME" or "cuda: none".
check() {
    "$PYTHON" - <<'PY'
import importlib
missing = []
for name in ("numpy", "torch", "triton", "bitsandbytes", "numba"):
    try:
        importlib.import_module(name)
    except Exception as error:  # not installed, or broken on import
        missing.append(f"{name} ({type(error).__name__})")
print("missing: " + ", ".join(missing))
try:
    import torch
    print("cuda: " + (torch.cuda.get_device_name() if torch.cuda.is_available() else "none"))
    print("torch: " + torch.__version__)
except Exception:
    print("cuda: none")
PY
}

status=$(check)
echo "$status"
if [[ $install == 1 ]] || grep -qE '^missing: .*(numpy|torch) \(' <<<"$status"; then
    echo "installing the test extra: $PYTHON -m pip install -e .[test]"
    "$PYTHON" -m pip install --retries 1 --timeout 20 -e ".[test]" \
        || echo "pip install failed (no network?): going on with what is installed"
    status=$(check)
    echo "$status"
fi
if grep -qE '^missing: .*(numpy|torch) \(' <<<"$status"; then
    echo "cannot run: numpy and torch are needed" >&2
    exit 2
fi
if grep -q '^cuda: none' <<<"$status" && [[ " ${args[*]-} " != *" --device cpu "* ]]; then
    echo "no CUDA device visible to torch: nothing to measure (--device cpu --quick is a dry run)" >&2
    exit 3
fi
exec "$PYTHON" -m rmsprop.benchmark.gpu "${args[@]}"
