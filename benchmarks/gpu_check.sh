#!/usr/bin/env bash
# The GPU paths in one short run, on a machine with CUDA and tracerflow installed (CI has no GPU):
#   1. the background generator's speed rows with the generators on the GPU, put beside the
#      recorded CPU block of a copy of the results file (benchmarks/background.py --device cuda);
#   2. the background generators' digits on the GPU do not depend on the batch size;
#   3. the embedded default analysis end to end with train.device=cuda (cuda, not auto: a run
#      that could not use the GPU fails instead of falling back), then one fold's model removed
#      and trained again: the same bytes.
# Usage: benchmarks/gpu_check.sh OUTPUT_DIR [RESULTS_JSON]; logs and the results copy go to OUTPUT_DIR.
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUTPUT_DIR [RESULTS_JSON]}
results=${2:-benchmarks/results.json}
python=${PYTHON:-python3}
tracerflow=${TRACERFLOW:-tracerflow}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
status=0

step() { echo "== $(date +%T) $*"; }

step "CUDA"
"$python" -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

step "1. background speed rows on cuda"
cp "$results" "$out/results.json"
if "$python" "$here/benchmarks/background.py" --device cuda --output "$out/results.json" > "$out/background.log" 2>&1; then
    grep -E "^background:|on NVIDIA|on cuda" "$out/background.log" | grep -v "^ " | head -20
else
    echo "background speed on cuda failed (log: background.log)"; tail -20 "$out/background.log"; status=1
fi

step "2. digits on cuda do not depend on the batch size"
"$python" - <<'EOF' || status=1
import numpy as np, torch
from tracerflow.background.conditions import ConditionsStore
from tracerflow.background.generator import BackgroundGenerator, payload_name
from tracerflow.background.models import build_model
import tempfile
hashes = np.arange(1, 25, dtype=np.uint64) * 2654435761
with tempfile.TemporaryDirectory() as tmp:
    store = ConditionsStore(tmp)
    for name in ("conditioned", "convnet", "resnet", "clusters"):
        torch.manual_seed(7)
        model = build_model(name, "default")
        revision = store.put("gpu-check", payload_name(name), model.state_dict(), {"model": model.config()})
        gen = BackgroundGenerator(name, seed=11, globaltag="gpu-check", store=store, revision=revision, device="cuda")
        gen.initialize()
        whole, ones = gen.events(hashes, batch_size=24), gen.events(hashes, batch_size=1)
        same = all(np.array_equal(whole[k], ones[k]) for k in whole)
        print(f"{name}: {len(whole['charge'])} digits, batch 24 == batch 1: {same}")
        assert same, name
EOF

step "3. default analysis with train.device=cuda"
work=$(mktemp -d)
cd "$work" || exit 1
start=$(date +%s)
if "$tracerflow" run --set train.device=cuda > "$out/default_run.log" 2>&1; then
    echo "default analysis on cuda: $(( $(date +%s) - start )) s"; tail -4 "$out/default_run.log"
    model=$(find tracerflow-output -name model.h5 | sort | head -1)
    before=$(sha256sum "$model" | cut -c1-16)
    rm "$model"
    start=$(date +%s)
    if "$tracerflow" run --set train.device=cuda --until TrainFold > "$out/rerun.log" 2>&1; then
        after=$(sha256sum "$model" | cut -c1-16)
        echo "$model retrained in $(( $(date +%s) - start )) s: $before -> $after"
        [ "$before" = "$after" ] || { echo "a fold trained twice on cuda gave different bytes"; status=1; }
    else
        echo "rerun failed (log: rerun.log)"; tail -20 "$out/rerun.log"; status=1
    fi
else
    echo "default analysis on cuda failed (log: default_run.log)"; tail -30 "$out/default_run.log"; status=1
fi
exit $status
