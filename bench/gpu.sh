#!/usr/bin/env bash
# The GPU check, one command: the large stream (every PhraseBank 50Agree train row in three batches, then three
# Twitter batches of the same size) on a CUDA GPU with the shipped recipe (train.device auto picks it; precision auto = bf16 autocast,
# pinned memory), then training samples/s per strategy and the stream's table.
#
#   bash bench/gpu.sh [OUT]                          # OUT: where the report goes (default /tmp/cltool-gpu)
#   PYTHON=python3 DATA=.gpu/data STRATEGIES="naive class_balanced joint" SEEDS=13 bash bench/gpu.sh "$OUT"
#
# PYTHON must have torch with CUDA and this repo's requirements (a GPU machine that cannot reach PyPI brings its
# own); DATA is the folder with financial_phrasebank/ and twitter_financial_news_sentiment/ (../shared/data here).
# About 3 minutes on one H100 with the two default strategies. CI never runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/cltool-gpu}}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DATA=${DATA:-../shared/data}
STRATEGIES=${STRATEGIES:-naive class_balanced}
SEEDS=${SEEDS:-13}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
mkdir -p "$OUT"

"$PYTHON" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit(f"bench/gpu.sh: no CUDA GPU visible to torch {torch.__version__}; nothing to measure")
print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, bf16 {torch.cuda.is_bf16_supported()}")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true

# shellcheck disable=SC2086 (word splitting of the lists is the point)
"$PYTHON" -m bench.cl_stream --data "$DATA" --batch-rows 0 --strategies $STRATEGIES --seeds $SEEDS \
    --out "$OUT" --name gpu_stream | tee "$OUT/gpu_stream.log"

"$PYTHON" - "$OUT/gpu_stream.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"\n{report['machine']}; wall {report['wall_seconds'] / 60:.1f} min")
print("| strategy | seed | training samples | training seconds | samples/s |\n|---|---:|---:|---:|---:|")
for run in report["runs"]:
    samples, seconds = sum(run["samples"]), sum(run["seconds"])
    print(f"| {run['strategy']} | {run['seed']} | {samples} | {seconds:.0f} | {samples / seconds:.1f} |")
PY
echo
cat "$OUT/gpu_stream.md"
