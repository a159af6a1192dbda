#!/usr/bin/env bash
# The GPU paths in one short run, on a machine with CUDA and tracerflow installed (CI has no GPU):
#   1. the background generator's speed rows with the generators on the GPU, put beside the
#      recorded CPU block of a copy of the results file (benchmarks/background.py --device cuda);
#   2. the background generators' digits on the GPU do not depend on the batch size;
#   3. the embedded default analysis end to end with train.device=cuda (cuda, not auto: a run
#      that could not use the GPU fails instead of falling back), then one fold's model removed
#      and trained again: the same bytes;
#   4. the same for the other set and graph models: the hit workflow (configs/hits.yaml, a GNN)
#      end to end, and fold 0 of the default analysis with a transformer set.
# Each run's log is searched for torch's warning of an op without a deterministic implementation.
# Usage: benchmarks/gpu_check.sh OUTPUT_DIR [RESULTS_JSON]; logs and the results copy go to
# OUTPUT_DIR; GPU_CHECK_STEPS (default "1 2 3 4") picks the steps.
set -u
out=${1:?usage: benchmarks/gpu_check.sh OUTPUT_DIR [RESULTS_JSON]}
results=${2:-benchmarks/results.json}
python=${PYTHON:-python3}
tracerflow=${TRACERFLOW:-tracerflow}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
steps=" ${GPU_CHECK_STEPS:-1 2 3 4} "
status=0

step() { echo "== $(date +%T) $*"; }
want() { [[ $steps == *" $1 "* ]]; }

# retrained NAME ARGS...: `tracerflow run ARGS` in a fresh folder, then the first fold's model
# removed and the same run again; the model's bytes must not change
retrained() {
    local name=$1 work start model before after
    shift
    work=$(mktemp -d)
    start=$(date +%s)
    if ! (cd "$work" && "$tracerflow" run "$@" > "$out/$name.log" 2>&1); then
        echo "$name failed (log: $name.log)"; tail -30 "$out/$name.log"; return 1
    fi
    echo "$name: $(( $(date +%s) - start )) s; $(grep -E "tasks: " "$out/$name.log" | tail -1)"
    model=$(cd "$work" && find tracerflow-output -name model.h5 | sort | head -1)
    before=$(sha256sum "$work/$model" | cut -c1-16)
    rm "$work/$model"
    start=$(date +%s)
    if ! (cd "$work" && "$tracerflow" run "$@" > "$out/$name.rerun.log" 2>&1); then
        echo "$name: the rerun failed (log: $name.rerun.log)"; tail -30 "$out/$name.rerun.log"; return 1
    fi
    after=$(sha256sum "$work/$model" | cut -c1-16)
    echo "$name: $model retrained in $(( $(date +%s) - start )) s: $before -> $after"
    if grep -q "does not have a deterministic implementation" "$out/$name.log" "$out/$name.rerun.log"; then
        echo "$name: ops without a deterministic implementation:"
        grep -ho "[A-Za-z_.]* does not have a deterministic implementation" "$out/$name.log" | sort -u
    fi
    [ "$before" = "$after" ] || { echo "$name: trained twice on cuda, different bytes"; return 1; }
}

step "CUDA"
"$python" -c "import torch; assert torch.cuda.is_available(), 'CUDA is not available'; print(torch.__version__, torch.cuda.get_device_name())" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

if want 1; then
    step "1. background speed rows on cuda"
    cp "$results" "$out/results.json"
    if "$python" "$here/benchmarks/background.py" --device cuda --output "$out/results.json" > "$out/background.log" 2>&1; then
        grep -E "^background:|on NVIDIA|on cuda" "$out/background.log" | grep -v "^ " | head -20
    else
        echo "background speed on cuda failed (log: background.log)"; tail -20 "$out/background.log"; status=1
    fi
fi
if want 2; then
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
fi
if want 3; then
    step "3. default analysis with train.device=cuda"
    retrained default --set train.device=cuda || status=1
fi
if want 4; then
    step "4. the hit workflow (a GNN) and a transformer set on cuda"
    retrained hits --config hits --set train.device=cuda || status=1
    retrained transformer --until TrainFold --set train.device=cuda --set 'train.folds=[0]' \
        --set 'train.model.set={type: transformer, d_model: 64, n_heads: 4, n_layers: 2}' || status=1
fi
exit $status
