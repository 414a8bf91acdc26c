#!/usr/bin/env bash
# TOFU's whole pipeline on tiny-lm, stage by stage, each skipped when its output exists (so it resumes):
#   1. npo-tofu-full: tiny-lm fine-tuned on TOFU's full set (a release; commit the tree first)
#   2. the retain90 model (never sees forget10, nor forget05 and forget01, its last authors)
#   3. its truth ratios on forget10 under data/npo/ (the forget-quality reference of tofu.yaml)
#   4. npo-tofu-forget10: NPO+RT on forget10 from npo-tofu-full (a release)
#   5. the bench, and the headline grid (every objective × forget01/05/10 × seeds 0, 1, 2)
# On a shared machine wrap it: /work/bin/cpu bash scripts/npo_tofu_pipeline.sh [TOFU_DIR]
# About 1.5 CPU-hours to stage 4; the grid adds about 10 CPU-minutes a run.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
PY=${PYTHON:-python}
D=${1:-../shared/data/tofu}
RETAIN=logs/npo-retain90/version_0/checkpoints/last.ckpt
J=data/npo/tofu_retain90_forget10_truth_ratios.json
LICENCE="MIT (weights); TOFU data MIT"

[ -d checkpoints/npo-tofu-full ] || $PY scripts/release.py npo-tofu-full --licence "$LICENCE" \
    --data "TOFU full (4000 questions on 200 fictitious authors), 5 epochs from tiny-lm" --headline val/retain_prob \
    -- fit --config recipes/configs/npo/tofu_finetune.yaml --data.path "$D" --trainer.enable_progress_bar false
[ -f $RETAIN ] || $PY recipes/npo.py fit --config recipes/configs/npo/tofu_finetune.yaml --data.path "$D" \
    --data.train_split retain --trainer.max_steps 562 --trainer.val_check_interval 562 \
    --trainer.default_root_dir logs/npo-retain90 --trainer.enable_progress_bar false
[ -f $J ] || { mkdir -p data/npo && cp logs/npo-retain90/version_0/truth_ratios.json $J; }
# (commit $J and the npo-tofu-full release here: the next release refuses a dirty tree)
[ -d checkpoints/npo-tofu-forget10 ] || $PY scripts/release.py npo-tofu-forget10 --licence "$LICENCE" \
    --data "TOFU forget10 unlearned with NPO+RT from npo-tofu-full (10 epochs)" --headline val/forget_quality \
    -- fit --config recipes/configs/npo/tofu.yaml --data.path "$D" --model.retain_model $J --trainer.enable_progress_bar false
$PY scripts/bench/npo.py --data "$D" --steps 24 --rounds 3
$PY scripts/npo_headline.py --data "$D" --base npo-tofu-full --retain-model $RETAIN --objectives ga npo npo_rt --seeds 0
$PY scripts/npo_headline.py --data "$D" --base npo-tofu-full --retain-model $RETAIN --seeds 0 1 2
