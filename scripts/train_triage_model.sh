#!/usr/bin/env bash
# Trains the normal/abnormal model radsight-triage-256 on public films (RSNA's NIH films, train64 up-sampled, JSRT and
# the source-balanced COVID-QU-Ex films), then measures it: RSNA val chooses the checkpoint and the threshold; the
# NIH benchmark (paired against the default model's triage), RSNA test's opacity boxes and the shortcut audit measure.
#   bash scripts/train_triage_model.sh ../shared/data [run-folder] [epochs]
# Needs radsight[train]. Re-running resumes training from the run folder's last checkpoint.
# SOURCES=original,lung_masked,bone_suppressed trains on the enhanced channels (the lung-masked and bone-suppressed
# views beside the film) instead of the film alone.
set -euo pipefail
DATA=${1:?usage: train_triage_model.sh DATA_DIR [RUN_DIR] [EPOCHS]}
RUN=${2:-runs/triage}
EPOCHS=${3:-12}
SOURCES=${SOURCES:-original}
NAME=radsight-triage-256
MODEL=${MODEL:-$RUN/$NAME}
BENCH=$DATA/nih-cxr14/benchmark

python scripts/triage_manifests.py "$DATA" "$RUN/manifests"
radsight train --task abnormal --manifest "$RUN/manifests/train.csv" --images "$DATA" --out "$RUN/t256" \
  --architecture densenet-small-256 --input-size 256 --region thorax --sources "$SOURCES" --epochs "$EPOCHS" \
  --batch-size 32 --lr 1e-3 --seed 0
radsight export "$RUN/t256/best.pt" --out "$MODEL" --name "$NAME" --version 0.1.0 --license MIT \
  --training-data "RSNA Pneumonia (NIH films read by RSNA radiologists) train 1,052; NIH train64 train 834 (64 px, up-sampled); JSRT train 95; COVID-QU-Ex train 1,757 (all 879 normals, as many COVID-19 and other infections); checkpoint and threshold from RSNA val (208)"
radsight calibrate --model "$MODEL" --manifest "$RUN/manifests/train.csv" --images "$DATA" --split val
radsight evaluate --task abnormal --model "$MODEL" --manifest "$BENCH/manifest.csv" --images "$BENCH/images" \
  --reference "$DATA/nih-cxr14/reference/reproduce_chexnet_preds.csv" --out "$RUN/benchmark-eval"
radsight evaluate --task abnormal --model "$MODEL" --manifest "$RUN/manifests/rsna_test.csv" --images "$DATA" \
  --out "$RUN/rsna-test-eval"
radsight evaluate --shortcuts --model "$MODEL" --manifest "$RUN/manifests/audit.csv" --images "$DATA" \
  --out "$RUN/shortcuts"
