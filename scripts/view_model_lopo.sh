#!/usr/bin/env bash
# Leave-one-patient-out check of the view classifier on the multiview pairs: for each patient, a model trained
# without that patient's images (same recipe as train_view_model.sh) is measured on them.
#   bash scripts/view_model_lopo.sh ../shared/data [run-folder]
set -euo pipefail
DATA=${1:?usage: view_model_lopo.sh DATA_DIR [RUN_DIR]}
RUN=${2:-runs/view-lopo}
mkdir -p "$RUN"
radsight data import covid-chestxray "$DATA/multiview" --out "$RUN/multiview.csv"
for P in $(cut -d, -f2 "$RUN/multiview.csv" | tail -n +2 | sort -u); do
  radsight train --task view --out "$RUN/$P" --holdout "$P" --threads 1 \
    --manifest "$RUN/multiview.csv" --images "$DATA/multiview" \
    --manifest "$DATA/nih-cxr14/train64/manifest.csv" --images "$DATA/nih-cxr14/train64/images" \
    --manifest "$DATA/lung-masks-public/manifest.csv" --images "$DATA/lung-masks-public/images" > "$RUN/$P.log"
  radsight export "$RUN/$P/final.pt" --out "$RUN/$P/model" --name "lopo-$P" > /dev/null
  radsight evaluate --model "$RUN/$P/model" --manifest "$RUN/multiview.csv" --images "$DATA/multiview" \
    --subset "$P" --out "$RUN/$P/eval"
done
