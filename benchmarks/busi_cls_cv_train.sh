#!/bin/bash
# Train the busi-cls runs of a grouped 5-fold cross-validation on the folds of 'breastdx train busi-seg --cv-folds 5'
# (each fold's busi-seg model is the initialisation, and for the crop arm the segmenter), for
# benchmarks/busi_cls_cv_lesion.py. A fold whose metrics.json exists is skipped, so the script can be resumed, and
# two copies can share the folds (e.g. "0 2 4" and "1 3" on two cores).
#
# BREASTDX_DATA (or the default data root) must hold busi/. More training options for every fold (another arm of
# a comparison) go in BUSI_CLS_ARGS, e.g. BUSI_CLS_ARGS="--imbalance sampler".
#
# Usage: benchmarks/busi_cls_cv_train.sh SEG_CV_DIR OUT_DIR whole|crop MARGIN [FOLD ...]
#   e.g. benchmarks/busi_cls_cv_train.sh runs/busi-seg-cv/usual runs/busi-cls-cv/whole whole 0 0 1 2 3 4
#        benchmarks/busi_cls_cv_train.sh runs/busi-seg-cv/usual runs/busi-cls-cv/crop crop 0.3 0 1 2 3 4
set -euo pipefail
SEG_CV=$1; OUT_DIR=$2; ARM=$3; MARGIN=$4; shift 4
BREASTDX=${BREASTDX:-.venv/bin/breastdx}
[ $# -eq 0 ] && set -- 0 1 2 3 4
mkdir -p "$OUT_DIR"
for k in "$@"; do
  F="$SEG_CV/folds/f$k"
  OUT="$OUT_DIR/f$k"
  [ -f "$OUT/metrics.json" ] && continue
  read -r -a EXTRA <<< "${BUSI_CLS_ARGS:-}"
  [ "$ARM" = crop ] && EXTRA+=(--lesion-crop "$F/model" --crop-margin "$MARGIN")
  "$BREASTDX" train busi-cls --archs unet_multitask --image-size 128 --epochs 40 --lr 5e-4 --tta hflip \
    --precision auto --monitor val_nll --init-busi-seg "$F/model" --busi-seg-encoder-only false \
    --split-file "$F/split.json" --threads 1 --gradcam-examples 0 "${EXTRA[@]}" --out "$OUT" > "$OUT_DIR/f$k.log" 2>&1
done
