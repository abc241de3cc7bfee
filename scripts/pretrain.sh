#!/usr/bin/env bash
# Rebuild impax's shipped pretrained weights (src/impax/train/pretrained/{imnet-ae-cpu,ldif-cpu}) from
# nothing, with impax's own commands: 2200 built-in shapes of the separate 'pretrain' random stream
# (no `impax shapes`/`impax demo` seed draws from it), prepared like the demo prepares its shapes, then
# the `pretrain` presets of imnet-ae and ldif, one pinned CPU core each (they run side by side), then
# scripts/export_pretrained.py writes weights.npz + run.json + provenance.json (commands, seed, data
# recipe, steps, time, machine, IoU).
#
#   bash scripts/pretrain.sh WORK     # WORK: a scratch folder (~3 GB); takes ~2-3 hours on 2 cores
set -euo pipefail
W=${1:?usage: scripts/pretrain.sh WORK}
REPO=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$W"
SHAPES="impax shapes --out $W/shapes --count 2200 --seed 0 --stream pretrain"
PREPARE="impax prepare $W/shapes $W/data --quick --voxels-256 --skip views --split-fractions 0.95,0,0.05 --quiet"
[ -f "$W/shapes/torus/torus_199.ply" ] || $SHAPES > "$W/shapes.log"
$PREPARE
ONE_CORE="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
TRAIN_AE="impax train imnet-ae --data $W/data --out $W/imnet-ae --preset pretrain --seed 0 --no-progress"
TRAIN_LDIF="impax train ldif --data $W/data --out $W/ldif --preset pretrain --seed 0 --no-progress"
XLA_FLAGS="$ONE_CORE" taskset -c 0 $TRAIN_AE > "$W/imnet-ae.summary.json" 2> "$W/imnet-ae.log" &
XLA_FLAGS="$ONE_CORE" taskset -c 1 $TRAIN_LDIF > "$W/ldif.summary.json" 2> "$W/ldif.log" &
wait
for name in imnet-ae ldif; do
  train=$([ $name = imnet-ae ] && echo "$TRAIN_AE" || echo "$TRAIN_LDIF")
  python3 "$REPO/scripts/export_pretrained.py" "$W/$name" "$name-cpu" --summary "$W/$name.summary.json" \
    --command "shapes=$SHAPES" --command "prepare=$PREPARE" \
    --command "train=XLA_FLAGS='$ONE_CORE' taskset -c N $train" \
    --note "${PRETRAIN_NOTE:-trained side by side with the other model, one core each}"
done
