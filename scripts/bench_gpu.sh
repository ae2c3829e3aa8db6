#!/usr/bin/env bash
# The GPU benchmark in one command (docs/benchmarks.md "GPU"): training (tiny and ViT-B/16-384, loscat-hf with
# 0 and 16 workers against the plain Trainer in fp32 and bf16, same run), labelling against
# transformers.pipeline, ViT-B/16-384 training with --compile (time-boxed: compiling takes minutes), and
# `predict` over several processes against one (scripts/bench_processes.py: ViT-B/16-384 on camera-sized
# photos, default and 15 decoding workers, 2 processes sharing each GPU and one per GPU), and a torch.profiler
# op table of ViT-B/16-384 training steps (where the step time goes: attention, optimizer, copies, syncs).
#   bash scripts/bench_gpu.sh OUTDIR                  # every part (train+label+compile: ~8 min on an H200;
#                                                     # processes and profile not yet timed on a GPU)
#   bash scripts/bench_gpu.sh OUTDIR train label      # some parts (train label compile processes profile),
#                                                     # e.g. two calls to fit a 10-minute limit per command
# Wheels in .whl/ (e.g. a newer transformers than the GPU image's) are installed to /tmp/site first.
set -uo pipefail
out=${1:?usage: bash scripts/bench_gpu.sh OUTDIR [train] [label] [compile] [processes] [profile]}
shift
parts=" ${*:-train label compile processes profile} "
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
  python3 -c "from loscat_hf.hardware import cpu_description; print('cpu:', cpu_description())"
  git log -1 --format='commit %h %s' 2>/dev/null
} 2>&1 | tee "$out/env.txt"
common=(--photos 48 --camera 3000x2000 --batch 64 --steps 30 --plain-steps 3)
if [[ $parts == *" train "* ]]; then
  timeout "${TRAIN_S:-200}" python3 scripts/benchmark.py train "${common[@]}" --out "$out" 2>&1 | tee "$out/train.log"
fi
if [[ $parts == *" label "* ]]; then
  timeout "${LABEL_S:-90}" python3 scripts/benchmark.py label --photos 48 --camera 3000x2000 --base-images 48 \
    --pipeline-batches 8 32 --out "$out" 2>&1 | tee "$out/label.log"
fi
if [[ $parts == *" compile "* ]]; then
  timeout "${COMPILE_S:-240}" python3 scripts/benchmark.py train "${common[@]}" --plain-steps 2 --compile \
    --presets vit-base-384-random --out "$out/compile" 2>&1 | tee "$out/compile.log"
fi
if [[ $parts == *" processes "* ]]; then
  gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
  configs=(1x1 "$((2 * (gpus > 0 ? gpus : 1)))x1")
  [[ $gpus -gt 1 ]] && configs+=("${gpus}x1")
  proc=(--model "${PROCESSES_MODEL:-vit-base-384-random}" --photos "${PROCESSES_PHOTOS:-192}" --camera 3000x2000
        --configs "${configs[@]}")
  timeout "${PROCESSES_S:-240}" bash -c '
    python3 scripts/bench_processes.py "$@" --out "$0/processes" &&
    python3 scripts/bench_processes.py "$@" --workers 15 --out "$0/processes-15"' "$out" "${proc[@]}" \
    2>&1 | tee "$out/processes.log"
fi
if [[ $parts == *" profile "* ]]; then
  timeout "${PROFILE_S:-150}" python3 scripts/benchmark.py train --photos 48 --camera 3000x2000 --batch 64 \
    --steps 3 --plain-steps 1 --presets vit-base-384-random --profile 5 --out "$out/profile" 2>&1 \
    | tee "$out/profile.log"
fi
