#!/usr/bin/env bash
# The GPU suite: every speed number that needs a GPU, in one go (under 8 minutes on one GPU).
#
#   bash benchmarks/gpu_suite.sh              # on a machine with CUDA: writes benchmarks/results/gpu_*.md
#   bash benchmarks/gpu_suite.sh --dry-run [--out DIR]   # on the CPU, tiny sizes, into DIR (a temp folder)
#
# Steps (each one's wall time goes into gpu_suite.md, a failed step is marked and the rest still run):
#   1. benchmarks/han_speed.py on cuda, fp32 and bf16
#      -> gpu_han_speed_fp32.md, gpu_han_speed_bf16.md
#   2. one full-size epoch of every registered method, train.device=cuda, on one `avvp synth` set of
#      1,200 videos (the built-in set's size; vplan with its simulated-CLIP labels, poibin with no
#      warm-up so the epoch is a PoiBin one): train / method / validation seconds from each run's
#      metrics.csv -> gpu_methods_epoch.md
#   3. PPL's pseudo-labelling share: benchmarks/ppl_cost.py train.device=cuda -> gpu_ppl_cost.md
#   4. the pooling benchmark: benchmarks/poibin_speed.py --devices cuda -> gpu_poibin_speed.md
# --dry-run runs the same steps with train.device=cpu and tiny sizes (tests/test_gpu_suite.py runs
# it so the suite does not rot); it never writes into benchmarks/results.
# PYTHON (default: python) is the interpreter; run it from anywhere.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
dry_run=0
out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --out) out="$2"; shift ;;
        *) echo "gpu_suite.sh: unknown argument $1 (expected --dry-run, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done

if [[ $dry_run == 1 ]]; then
    out="${out:-$(mktemp -d -t gpu_suite.XXXXXX)}"
    device=cpu
    han_flags=(--devices cpu --steps 2 --repeats 2 --batch-size 2 --processes 1)
    # Tiny HAN on tiny synthetic sets: the point is that every step runs, not its numbers.
    videos=40
    train_flags=(optim.batch_size=8 model.d_model=32 model.feedforward=32)
    ppl_overrides=(data.synthetic_videos=40)
    ppl_flags=(--epochs 2)
    poibin_flags=(--devices cpu --sizes 10 --repeats 3 --budget 0.1)
else
    out="${out:-$here/results}"
    device=cuda
    if ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        echo "gpu_suite.sh: no CUDA device here; use --dry-run on a CPU" >&2
        exit 2
    fi
    han_flags=(--devices cuda)
    videos=1200  # the built-in synthetic set's size
    train_flags=()
    ppl_overrides=()
    ppl_flags=()
    poibin_flags=(--devices cuda)
fi
mkdir -p "$out"
summary="$out/gpu_suite.md"
printf '# GPU suite\n\n`bash benchmarks/gpu_suite.sh%s`\n\n| step | seconds | status |\n| --- | --- | --- |\n' \
    "$([[ $dry_run == 1 ]] && echo ' --dry-run')" > "$summary"
failures=0

step() {  # step NAME COMMAND...: run it, time it, record it
    local name="$1"; shift
    local started=$SECONDS status=ok
    echo "== $name" >&2
    if ! "$@"; then status=failed; failures=$((failures + 1)); fi
    printf '| %s | %d | %s |\n' "$name" $((SECONDS - started)) "$status" >> "$summary"
}

step "HAN speed fp32" "$python" "$here/han_speed.py" "${han_flags[@]}" --out "$out/gpu_han_speed_fp32"
step "HAN speed bf16" "$python" "$here/han_speed.py" "${han_flags[@]}" --precision bf16 \
    --out "$out/gpu_han_speed_bf16"

step "one epoch of every method" "$python" - "$out/gpu_methods_epoch" "$device" "$videos" \
    "${train_flags[@]}" <<'PYTHON'
"""One epoch of every registered method on one synthetic set; a row each."""
import atexit
import csv
import shutil
import sys
import tempfile
import time
from pathlib import Path

from avvp.cli import main as avvp
from avvp.registry import available

out, device, videos, overrides = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
scratch = Path(tempfile.mkdtemp(prefix="gpu_suite_methods-"))
atexit.register(shutil.rmtree, scratch, ignore_errors=True)
data, labels = scratch / "data", scratch / "vplan_labels.npz"
if avvp(["synth", "--out", str(data), "--videos", videos, "--no-progress"]) or avvp(
    ["pseudo-labels", "clip", "--data", str(data), "--simulated", "--out", str(labels),
     "--no-progress"]
):
    sys.exit("gpu_suite.sh: could not make the synthetic set or its vplan labels")
# What a one-epoch run of a method needs beyond the preset.
EXTRA = {"poibin": ["method.warmup_epochs=0"], "vplan": [f"method.visual_labels={labels}"]}
rows, failed = [], []
for method in available("method"):
    with tempfile.TemporaryDirectory() as folder:
        argv = ["train", "--method", method, "--data", str(data), "--out", folder, "--no-progress",
                "optim.epochs=1", f"train.device={device}", *EXTRA.get(method, []), *overrides]
        started = time.perf_counter()
        status = avvp(argv)
        wall = time.perf_counter() - started
        if status != 0:
            failed.append(method)
            rows.append(f"| {method} | {wall:.1f} | failed (exit {status}) | | | |")
            continue
        with open(Path(folder) / "metrics.csv") as file:
            epoch = list(csv.DictReader(file))[-1]
        rows.append(
            f"| {method} | {wall:.1f} | ok | {float(epoch['seconds.train']):.2f} "
            f"| {float(epoch['seconds.method']):.2f} | {float(epoch['seconds.val']):.2f} |"
        )
table = "\n".join(
    ["| method | command wall s | status | train s | method s | validation s |",
     "| --- | --- | --- | --- | --- | --- |", *rows]
)
print(table)
note = (f"`avvp train --method M --data SYNTH optim.epochs=1 train.device={device} "
        f"{' '.join(overrides)}` (SYNTH: `avvp synth --videos {videos}`; poibin "
        "method.warmup_epochs=0, vplan method.visual_labels from `avvp pseudo-labels clip "
        "--simulated`): the command's wall time (data, model set-up, one epoch, test scoring) "
        "and the epoch's phases from metrics.csv.")
out.with_suffix(".md").write_text(f"# One epoch of every method\n\n{table}\n\n{note}\n")
sys.exit(1 if failed else 0)
PYTHON

step "PPL pseudo-labelling share" "$python" "$here/ppl_cost.py" "${ppl_flags[@]}" \
    --out "$out/gpu_ppl_cost" "train.device=$device" "${train_flags[@]}" "${ppl_overrides[@]}"
step "PoiBin pooling" "$python" "$here/poibin_speed.py" "${poibin_flags[@]}" --out "$out/gpu_poibin_speed"

echo "gpu_suite.sh: results in $out ($failures failed step(s))" >&2
exit $((failures > 0))
