#!/usr/bin/env bash
# Trains the age and sex demonstration model on rsna-pneumonia's and jsrt-scr's train splits (their val splits choose
# the epoch and fit the bias correction), its encoder started from the shipped anatomy model's, then exports it and
# measures it on the NIH benchmark (never trained or tuned on) and on both sets' test splits.
#   bash scripts/train_age_sex_model.sh ../shared/data [run-folder] [threads]
# Needs radsight[train]. Re-running resumes from the run folder's last checkpoint.
set -euo pipefail
DATA=${1:?usage: train_age_sex_model.sh DATA_DIR [RUN_DIR] [THREADS]}
RUN=${2:-runs/age-sex}
THREADS=${3:-2}
R=$DATA/rsna-pneumonia
J=$DATA/jsrt-scr
B=$DATA/nih-cxr14/benchmark
META=$DATA/nih-cxr14/labels/Data_Entry_2017_v2020.csv.gz

radsight train --task age-sex \
  --manifest "$R/manifest.csv" --images "$R/images" \
  --manifest "$J/manifest.csv" --images "$J/images" \
  --init-from src/radsight/weights/radsight-anatomy/model.onnx \
  --out "$RUN" --epochs 24 --batch-size 16 --lr 1e-3 --input-size 256 --threads "$THREADS" --seed 0

NAME=radsight-age-sex-demo
MODEL=src/radsight/weights/$NAME
radsight export "$RUN/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 \
  --license "MIT (code); weights: the RSNA Pneumonia Detection Challenge and NIH ChestX-ray14 terms, JSRT's research-and-education terms" \
  --training-data "rsna-pneumonia train split (1,052 NIH films at 512 px with age and sex; Shih et al. 2019, Wang et al. 2017) and jsrt-scr train split (95 JSRT films; Shiraishi et al. 2000); their val splits (208 + 19) chose the epoch and fitted the bias correction and the sex check; encoder started from radsight-anatomy 0.1.0"
radsight evaluate --task age-sex --model "$MODEL" --manifest "$B/manifest.csv" --images "$B/images" \
  --metadata "$META" --out "$RUN/benchmark"
radsight evaluate --task age-sex --model "$MODEL" --manifest "$R/manifest.csv" --images "$R/images" --split test \
  --out "$RUN/rsna-test"
radsight evaluate --task age-sex --model "$MODEL" --manifest "$J/manifest.csv" --images "$J/images" --split test \
  --out "$RUN/jsrt-test"
