#!/usr/bin/env bash
# Reproduces the shipped two-view demonstration model: frontal studies of NIH train64 (lateral absent) and the
# multiview frontal+lateral pairs less three held-out patients; thresholds from train64's val split.
#   bash scripts/train_twoview_model.sh ../shared/data [run-folder]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_twoview_model.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/twoview-demo}
NAME=radsight-twoview-demo
MODEL=src/radsight/weights/$NAME
HOLDOUT="20 33 77"  # the view classifier's held-out patients too
T64=$DATA/nih-cxr14/train64
mkdir -p "$RUN"
radsight data import covid-chestxray "$DATA/multiview" --out "$RUN/multiview-all.csv"
# held-out patients' rows get split "test": never trained on, never used to choose a checkpoint
python - "$RUN/multiview-all.csv" "$RUN/multiview.csv" $HOLDOUT <<'PY'
import csv, sys
src, dst, held = sys.argv[1], sys.argv[2], set(sys.argv[3:])
rows = list(csv.DictReader(open(src, newline="")))
for r in rows:
    r["split"] = "test" if r["patient_id"] in held else "train"
with open(dst, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
PY
radsight train --views frontal,lateral --architecture densenet-small-twoview --out "$RUN" \
  --manifest "$T64/manifest.csv" --images "$T64/images" --manifest "$RUN/multiview.csv" --images "$DATA/multiview" \
  --input-size 64 --epochs 20 --batch-size 32 --lr 1e-3 --seed 0
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 --license MIT \
  --training-data "NIH ChestX-ray14 train64 (834 train-split frontal studies, lateral absent) and 8 frontal+lateral pairs of 5 patients of the multiview set (Cohen et al. 2020); thresholds from train64's 136-image val split"
radsight calibrate --model "$MODEL" --manifest "$T64/manifest.csv" --images "$T64/images" --split val --min-auroc 0.6
radsight calibrate --model "$MODEL" --manifest "$RUN/multiview.csv" --images "$DATA/multiview" --split train --lateral
radsight evaluate --model "$MODEL" --manifest "$DATA/nih-cxr14/benchmark/manifest.csv" \
  --images "$DATA/nih-cxr14/benchmark/images" --out "$RUN/benchmark-eval"
radsight fit-ood --model "$MODEL" --fit "$T64/manifest.csv#train" --fit "$DATA/lung-masks-public/manifest.csv#train" \
  --held "$T64/manifest.csv#val" --held "$DATA/lung-masks-public/manifest.csv#val"
