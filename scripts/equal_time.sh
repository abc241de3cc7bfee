#!/usr/bin/env bash
# Equal-training-time comparison of the cpu presets of ldif, sif and imnet-ae on built-in shapes.
#
#   bash scripts/equal_time.sh WORK LDIF_STEPS SIF_STEPS IMNET_STEPS
#
# Makes 88 built-in shapes (seed 0) and their store (70 train / 18 held-out by the default hash
# split), trains each recipe's `cpu` preset with the given step budget (`--set budget_steps=N`:
# the schedule then fits that budget, nothing else of the preset changes), and scores the held-out
# split of each run with `impax test` (meshes extracted at 128^3, scored against the ground-truth
# meshes in the gt-unit frame: the same metric for all three families), once without and once
# with test-time refinement (REFINE=N steps, default 200; REFINE=0: without only). Choose the budgets so that the `train_seconds` the runs print agree:
# the script prints them next to the IoUs. Runs are resumable: rerunning skips finished steps.
set -euo pipefail
W=${1:?WORK folder}; LDIF=${2:?ldif steps}; SIF=${3:?sif steps}; IMNET=${4:?imnet-ae steps}
REFINE=${REFINE:-200}
mkdir -p "$W"
[ -d "$W/shapes" ] || impax shapes --out "$W/shapes" --count 88 --seed 0
[ -f "$W/data/index.json" ] || impax prepare "$W/shapes" "$W/data" --quick --quiet
train() {  # recipe steps
  impax train "$1" --data "$W/data" --out "$W/runs/$1" --preset cpu --set "budget_steps=$2" --no-progress \
    > "$W/runs/$1.train.json" 2> "$W/runs/$1.train.log"
}
mkdir -p "$W/runs" "$W/tests"
train ldif "$LDIF"; train sif "$SIF"; train imnet-ae "$IMNET"
for r in ldif sif imnet-ae; do
  for n in $(printf '%s\n' 0 "$REFINE" | sort -un); do
    impax test "$W/runs/$r" --data "$W/data" --meshes "$W/shapes" --resolution 128 --refine "$n" \
      --out "$W/tests/$r-refine$n" --quiet > "$W/tests/$r-refine$n.log" 2>&1 || true
  done
done
python3 - "$W" "$REFINE" <<'EOF'
import json, sys
from pathlib import Path
w, refines = Path(sys.argv[1]), list(dict.fromkeys(("0", sys.argv[2])))
print("held-out IoU: mean over shapes (mean over classes); gt-unit frame, 128^3 extraction")
print(f"{'recipe':10} {'steps':>6} {'train s':>8} " + " ".join(f"{'refine ' + n:>14}" for n in refines))
for r in ("ldif", "sif", "imnet-ae"):
    s = json.loads((w / "runs" / r / "summary.json").read_text())["summary"]
    cells = []
    for n in refines:
        f = w / "tests" / f"{r}-refine{n}" / "summary.json"
        m = json.loads(f.read_text())["summary"] if f.is_file() else None
        cells.append(f"{m['shape_mean']['iou']:.3f} ({m['class_mean']['iou']:.3f})" if m else "failed")
    print(f"{r:10} {s['global_step']:>6} {s['train_seconds']:>8.0f} " + " ".join(f"{c:>14}" for c in cells))
EOF
