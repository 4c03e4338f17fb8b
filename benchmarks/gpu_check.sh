#!/usr/bin/env bash
# GPU checks in one command (about 5 minutes on an H200, each part time-limited so a slow
# part cannot starve the rest): the Triton kernels against the torch backend and the
# original's golden outputs, torch.compile with inductor, then the launch-setting sweep and
# both benchmarks. Writes gpu_check.log and six JSON files to the folder $OUT names, or
# ./gpu-results.
#
# spikingjelly is the benchmarks' baseline; on a machine without it, carry its wheels in .whl/
# (see benchmarks/RESULTS.md) and this script installs them into a private folder.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
if ! python3 -c "import spikingjelly" 2>/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/sj-site .whl/*.whl
    export PYTHONPATH=$PYTHONPATH:/tmp/sj-site
fi
python3 -c "import torch, triton, timm, spikingjelly; from importlib.metadata import version; assert torch.cuda.is_available(), 'no GPU';
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__,
      'timm', timm.__version__, 'spikingjelly', version('spikingjelly'),
      torch.cuda.get_device_name())" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv

failed=()
part() {  # part NAME SECONDS COMMAND...: run one part under a time limit, note a failure
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name (limit ${limit} s) =="
    timeout -k 10 "$limit" "$@" || failed+=("$name (exit $?)")
    echo "== $name took $((SECONDS - start)) s =="
}

workers=()
python3 -c "import xdist" 2>/dev/null && workers=(-n 8)
part tests 90 python3 -m pytest -q -p no:cacheprovider "${workers[@]}" tests/test_neurons.py \
    tests/test_models_compile.py \
    tests/test_models_golden.py::test_float32_triton_backend_matches_original
part tune_lif 45 python3 -m benchmarks.tune_lif --T 4 --log2-neurons 24 --dtype bf16 \
    --json "$out/tune_lif.json"
part bench_lif 160 python3 -m benchmarks.bench_lif --T 4 16 --log2-neurons 20 24 26 \
    --dtypes fp32 bf16 --json "$out/bench_lif.json"
part bench_model 60 python3 -m benchmarks.bench_model --reference --json "$out/bench_model.json"
part bench_model_unpacked 45 python3 -m benchmarks.bench_model --no-pack \
    --lif-backend triton spikingjelly --json "$out/bench_model_unpacked.json"
part bench_model_amp 45 python3 -m benchmarks.bench_model --amp --lif-backend triton spikingjelly \
    --json "$out/bench_model_amp.json"
part bench_model_compile 120 python3 -m benchmarks.bench_model --variants eager compiled --lif-backend triton \
    --skip-inference --json "$out/bench_model_compile.json"

if [ ${#failed[@]} -gt 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all parts passed"
