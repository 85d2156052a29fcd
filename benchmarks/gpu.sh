#!/usr/bin/env bash
# One command on a GPU machine (issue 17): PyTorch eager, Paddle dynamic, Paddle Inference and ONNX Runtime,
# float32 and float16, batch 1 and 64, every family's smallest variant, outputs compared as on the CPU
# (benchmarks/infer.py), then the device tests (tests/test_devices.py, tests/test_precision.py), which
# run their GPU cases only here.
#
#   bash benchmarks/gpu.sh                 # cuda:0, figures in benchmarks/gpu-results.json
#   DEVICE=cuda:1 OUT=/tmp/gpu.json bash benchmarks/gpu.sh [extra infer.py flags, e.g. --family shunted]
#
# It checks first (before anything is measured) that there is a GPU and that the installed frameworks
# are their GPU builds, and says what to install when not.
set -euo pipefail

cd "$(dirname "$0")/.."
DEVICE="${DEVICE:-cuda:0}"
OUT="${OUT:-benchmarks/gpu-results.json}"
PY="${PYTHON:-python}"
missing=0

say() { printf '%s\n' "$*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
    say "gpu.sh: no nvidia-smi: this machine has no NVIDIA driver (install the driver, or run on a GPU machine)"
    exit 2
fi
if ! nvidia-smi -L >/dev/null 2>&1 || [ -z "$(nvidia-smi -L 2>/dev/null)" ]; then
    say "gpu.sh: nvidia-smi sees no GPU (check the driver and CUDA_VISIBLE_DEVICES)"
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2

# each framework's own answer: a CUDA build that sees the GPU
if ! "$PY" - <<'EOF'
import sys
try:
    import torch
except ImportError:
    sys.exit("gpu.sh: torch is not installed; pip install torch --index-url https://download.pytorch.org/whl/cu126")
if not torch.version.cuda or not torch.cuda.is_available():
    sys.exit(f"gpu.sh: torch {torch.__version__} is a CPU build or sees no GPU; "
             "pip install torch --index-url https://download.pytorch.org/whl/cu126")
print(f"torch {torch.__version__} CUDA {torch.version.cuda}: {torch.cuda.get_device_name(0)}", file=sys.stderr)
EOF
then missing=1; fi

if ! "$PY" - <<'EOF'
import sys
try:
    import paddle
except ImportError:
    sys.exit("gpu.sh: paddle is not installed; pip install paddlepaddle-gpu==3.3.1 "
             "-i https://www.paddlepaddle.org.cn/packages/stable/cu126/")
if not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() < 1:
    sys.exit(f"gpu.sh: paddlepaddle {paddle.__version__} is the CPU build or sees no GPU; pip uninstall "
             "paddlepaddle && pip install paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/")
print(f"paddlepaddle-gpu {paddle.__version__} CUDA {paddle.version.cuda()}", file=sys.stderr)
EOF
then missing=1; fi

if ! "$PY" - <<'EOF'
import sys
try:
    import onnxruntime
except ImportError:
    sys.exit("gpu.sh: onnxruntime is not installed; pip install onnxruntime-gpu")
if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
    sys.exit(f"gpu.sh: onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider; "
             "pip uninstall onnxruntime && pip install onnxruntime-gpu")
print(f"onnxruntime {onnxruntime.__version__}: {onnxruntime.get_available_providers()}", file=sys.stderr)
EOF
then missing=1; fi

if [ "$missing" != 0 ]; then
    say "gpu.sh: install the GPU builds named above, then run it again (nothing was measured)"
    exit 2
fi

# the device tests first: a GPU that gives wrong numbers is not worth timing
"$PY" -m pytest -q -rs tests/test_devices.py tests/test_precision.py

"$PY" benchmarks/infer.py \
    --device "$DEVICE" \
    --backend torch paddle paddle-inference onnxruntime \
    --dtype float32 float16 \
    --batch 1 64 \
    --json "$OUT" \
    "$@"
say "gpu.sh: figures in $OUT"
