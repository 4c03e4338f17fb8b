#!/usr/bin/env bash
# GPU checks in one command (under 5 minutes on one GPU): the Triton kernels against the torch
# backend in fp32/bf16/fp16 (the real kernels, not the interpreter), then both benchmarks.
# JSON and logs go to $OUT (the device tool's folder) or ./gpu-results.
#
# spikingjelly is the benchmarks' baseline; on a machine without it, carry its wheels in .whl/
# (see benchmarks/RESULTS.md) and this script installs them into a private folder.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python3 -c "import spikingjelly" 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/sj-site .whl/*.whl
    export PYTHONPATH=$PYTHONPATH:/tmp/sj-site
fi
python3 -c "import torch, triton; assert torch.cuda.is_available(), 'no CUDA GPU';
print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"

echo "== correctness: triton (compiled) against torch =="
python3 -m pytest -q -p no:cacheprovider tests/test_neurons.py 2>&1 | tee "$out/gpu_tests.log"

echo "== bench_lif =="
python3 -m benchmarks.bench_lif --steps 1 4 16 --log2-neurons 20 24 26 --dtypes fp32 bf16 fp16 \
    --json "$out/bench_lif.json" 2>&1 | tee "$out/bench_lif.log"

if [ -f benchmarks/bench_model.py ]; then
    echo "== bench_model =="
    python3 -m benchmarks.bench_model --json "$out/bench_model.json" 2>&1 | tee "$out/bench_model.log"
fi
