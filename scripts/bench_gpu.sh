#!/usr/bin/env bash
# The GPU benchmark in one command (docs/benchmarks.md "GPU"): training (tiny and ViT-B/16-384, loscat-hf with
# 0 and 16 workers against the plain Trainer in fp32 and bf16, same run), labelling against
# transformers.pipeline, then ViT-B/16-384 training with --compile (time-boxed: compiling takes minutes).
#   bash scripts/bench_gpu.sh OUTDIR      # about 8 minutes on an H200 host (docs/benchmarks.md)
# Wheels in .whl/ (e.g. a newer transformers than the GPU image's) are installed to /tmp/site first.
set -uo pipefail
out=${1:?usage: bash scripts/bench_gpu.sh OUTDIR}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, transformers, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'datasets', datasets.__version__)"
  echo "cpu cores: $(nproc)"
  git log -1 --format='commit %h %s' 2>/dev/null
} 2>&1 | tee "$out/env.txt"
common=(--photos 48 --camera 3000x2000 --batch 64 --steps 30 --plain-steps 3)
timeout "${TRAIN_S:-200}" python3 scripts/benchmark.py train "${common[@]}" --out "$out" 2>&1 | tee "$out/train.log"
timeout "${LABEL_S:-90}" python3 scripts/benchmark.py label --photos 48 --camera 3000x2000 --base-images 48 \
  --pipeline-batches 8 32 --out "$out" 2>&1 | tee "$out/label.log"
timeout "${COMPILE_S:-240}" python3 scripts/benchmark.py train "${common[@]}" --plain-steps 2 --compile \
  --presets vit-base-384-random --out "$out/compile" 2>&1 | tee "$out/compile.log"
