#!/usr/bin/env bash
# The seed system's ablation on the data here: the demo recipe (densenet-small, 64 px, train64; 10 epochs, one thread) with
# input channels original | original + lung_masked | original + lung_masked + bone_suppressed, and binary
# pretraining (--task abnormal for 5 epochs, then the 14 findings from it), and SCALP (--scalp 0.8: patient-aware
# supervised contrastive loss beside the BCE). Each arm is calibrated on the val split and
# evaluated on the benchmark, paired against the `original` arm's predictions.
#   bash scripts/ablation_enhanced_inputs.sh ../shared/data [RUN_DIR] [ARM ...]
# Arms: original lung bone pretrained scalp (default: all). Needs radsight[train]; re-running resumes.
# Adoption rule, fixed before the runs: an arm is adopted only if the paired 95% CI of its mean-AUROC difference
# from `original` lies above 0.
set -euo pipefail
DATA=${1:?usage: ablation_enhanced_inputs.sh DATA_DIR [RUN_DIR] [ARM ...]}
RUN=${2:-runs/ablation}
shift $(( $# > 1 ? 2 : 1 ))
ARMS=${*:-original lung bone pretrained scalp}
T64=$DATA/nih-cxr14/train64
BENCH=$DATA/nih-cxr14/benchmark
RECIPE=(--manifest "$T64/manifest.csv" --images "$T64/images" --architecture densenet-small --input-size 64
        --epochs 10 --batch-size 32 --lr 1e-3 --seed 0 --threads 1)

arm() {  # name, then extra train options
    local name=$1; shift
    radsight train "${RECIPE[@]}" --out "$RUN/$name" "$@"
    radsight export "$RUN/$name/best.pt" --out "$RUN/$name/model" --name "ablation-$name" --version 0 \
      --license MIT --training-data "NIH train64 (834 train images), ablation arm $name"
    radsight calibrate --model "$RUN/$name/model" --manifest "$T64/manifest.csv" --images "$T64/images" --split val
    local reference=()
    if [ "$name" != original ]; then reference=(--reference "$RUN/original/benchmark-eval/predictions.csv"); fi
    radsight evaluate --model "$RUN/$name/model" --manifest "$BENCH/manifest.csv" --images "$BENCH/images" \
      "${reference[@]}" --out "$RUN/$name/benchmark-eval"
}

for a in $ARMS; do
    case $a in
        original) arm original ;;
        lung) arm lung --sources original,lung_masked ;;
        bone) arm bone --sources original,lung_masked,bone_suppressed ;;
        pretrained)
            radsight train "${RECIPE[@]}" --task abnormal --epochs 5 --out "$RUN/abnormal"
            arm pretrained --init-from "$RUN/abnormal/best.pt" ;;
        scalp) arm scalp --scalp 0.8 ;;
        *) echo "unknown arm $a" >&2; exit 2 ;;
    esac
done
