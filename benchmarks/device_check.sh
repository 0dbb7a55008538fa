#!/usr/bin/env bash
# Issue [17]'s GPU check as one prepared command for a lent GPU machine (run from the repository
# root; the machine's own python3 holds a CUDA PyTorch, so no install): `mnfn bench --device cuda`
# at batch 32 and at a large batch, then the large batch under torch.compile. JSON and logs go to
# $OUT (the device tool's output folder), else runs/device. About 3-5 minutes on an H200.
#
#     bash benchmarks/device_check.sh            # then record the figures in benchmarks/README.md
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
py=${PYTHON:-python3}   # the GPU machine's python3 holds a CUDA PyTorch
out=${OUT:-runs/device}
mkdir -p "$out"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" | tee "$out/machine.txt"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee -a "$out/machine.txt"
for b in 32 4096; do
  timeout 240 "$py" -m mnfn.cli bench --device cuda --no-data --batch $b --repeats 30 --json "$out/bench_b$b.json" \
      2>&1 | tee "$out/bench_b$b.txt"
done
timeout 240 "$py" -m mnfn.cli bench --device cuda --no-data --batch 4096 --compile --specs zoo-cnn --models monomial,hnp \
    --json "$out/bench_compile_b4096.json" 2>&1 | tee "$out/bench_compile_b4096.txt"
