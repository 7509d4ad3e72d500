#!/usr/bin/env bash
# The main job on the embedded default, end to end on a CPU in minutes, no downloads:
# synthetic ISRUC-format PSG -> 336x336 epoch images -> tiny LLaVA-NeXT + LoRA -> evals report.
#
#   bash recipes/quickstart.sh [OUT_DIR]        (default outputs/quickstart; re-running overwrites)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/quickstart}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# -- data: 12 synthetic subjects in ISRUC's on-disk format, rendered with a subject-wise split -----
psgvlm synth --format isruc --subjects 12 --minutes 30 --seed 0 --out "$OUT/isruc" --overwrite
psgvlm render --format isruc --input "$OUT/isruc" --out "$OUT/isruc_img" --num-proc 2 --overwrite

# -- model: a tiny random LLaVA-NeXT built from a config and saved like the real one -------------
psgvlm tiny-model --out "$OUT/tiny-llava" --image-size 112 --overwrite

# -- train: LoRA on vision tower + language model, projector frozen; scores the test split at the end
accelerate launch --config_file recipes/accelerate/cpu.yaml recipes/llava_isruc.py \
    --config recipes/configs/llava_tiny_cpu.yaml \
    --dataset "$OUT/isruc_img" --model "$OUT/tiny-llava" --output_dir "$OUT/run"

# -- evaluate: metrics with bootstrap CIs and plots, then a Markdown report ------------------------
python -m evals metrics --runs "$OUT/run" --out "$OUT/eval"
python -m evals report --results "$OUT/eval" --out "$OUT/report"
echo "done: report at $OUT/report/report.md"
