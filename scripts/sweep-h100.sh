#!/bin/bash
# On the GPU machine (../shared/device/README.md): a small threshold sweep against the kit's real
# server (`transformers serve`, continuous batching, a random 1.4 B Qwen3-shaped model on one
# H100), with the GPU recorded through NVML.
#
# Usage (in one device run, after copying release binaries to .device-kit/bin):
#   bash scripts/sweep-h100.sh .device-kit "$OUT/sweep"
#
# The threshold is placed from two probe runs (mean TPOT at concurrency 1 and 16 of 256x64), so
# that the boundary falls inside the grid whatever this server's speed is today.
set -eu
kit=${1:?usage: sweep-h100.sh KIT_DIR OUT_DIR}; out=${2:?usage: sweep-h100.sh KIT_DIR OUT_DIR}
B=$kit/bin/benchctl
mkdir -p "$out"
exec > >(tee "$out/console.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
bash "$kit/start-server.sh" "$kit" 8000
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model --backend openai)

echo "== probes"
for c in 1 16; do
  "$B" bench "${server[@]}" --input-len 256 --output-len 64 --max-concurrency $c \
    --num-prompts $((c * 2 > 4 ? c * 2 : 4)) --quiet --save-result "$out/probe_c$c.json" > "$out/probe_c$c.txt"
done
tpot=$(python3 -c "
import json
a = json.load(open('$out/probe_c1.json'))['mean_tpot_ms']; b = json.load(open('$out/probe_c16.json'))['mean_tpot_ms']
print(f'{a:.1f} {b:.1f} {round((a + b) / 2)}')")
echo "mean TPOT at c=1 and c=16 (ms), and the bound between them: $tpot"
bound=${tpot##* }

echo "== sweep"
time "$B" sweep "${server[@]}" --gpu-num 1 --dtype bfloat16 \
  --io 256x64,1024x64 --concurrency 1,2,4,8,16,32 \
  --prompts-per-concurrency 2 --min-prompts 4 \
  --threshold "tpot:$bound p99_ttft:3000" --search bisect --repeats 2 \
  --metadata "gpu=H100 80GB HBM3,server=transformers serve --continuous-batching,model=random 1.4B Qwen3-shaped" \
  --result-dir "$out/bench_logs"

echo "== sweep without --gpu-num (GPUs found by NVML)"
"$B" sweep "${server[@]}" --io 128x32 --concurrency 4 --num-prompts 8 --quiet \
  --result-dir "$out/auto" 2>&1 | grep -E "GPU statistics|results in"
