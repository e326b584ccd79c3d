#!/bin/bash
# On the GPU machine (../shared/device/README.md): a conversation sweep against llama.cpp's
# llama-server (CUDA), with --server-metrics and real NVML, in one device call (about 4 minutes
# once the server runs; a fresh machine first builds llama-server and the model, about 4.5 min).
#   conversations-gpu.sh KIT OUT
# KIT holds the release binaries in KIT/bin (benchctl, gzipped as the other scripts take them).
#
# What it runs (all on /v1/completions: the random model has no chat template, so each turn's
# prompt is the concatenated history, the server's real answers included):
#   1. two benches of 16 sessions x 4 turns at 16 sessions in flight, 256-token messages, 128
#      tokens per answer, 500 ms think time: with llama.cpp's slot prefix reuse on
#      (`cache_prompt: true`, its default) and off. Mean TTFT by turn shows what the growing
#      context costs, and what the reused prefix saves.
#   2. the sweep: the largest number of concurrent sessions (4..64) within p99 TTFO 1000 ms and
#      mean TPOT 50 ms, bisected.
set -eu
kit=${1:?usage: conversations-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-conversations.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 64 4096
# 64 slots of 4096 tokens: a session's longest prompt is 4 x 256 + 3 x 128 = 1408 tokens
FLAGS=${FLAGS:-"-np 64 -c 262144 -fa on --cache-ram 0 -b 4096 -ub 2048"}
# shellcheck disable=SC2086
bash "$here/llama-serve.sh" 8000 $FLAGS
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
conv=(--dataset conversations --turns 4 --think-time 500ms)
SECONDS=0

for cache in true false; do
  "$B/benchctl" bench "${server[@]}" "${conv[@]}" --gpu-num 1 --server-metrics \
    --input-len 256 --output-len 128 --num-prompts 16 --max-concurrency 16 --warmup-requests 16 \
    --extra-body "{\"cache_prompt\": $cache}" --save-result "$out/bench-cache-$cache.json" \
    > "$out/bench-cache-$cache.txt" 2>&1 || echo "bench cache_prompt=$cache failed"
  echo "== cache_prompt $cache (${SECONDS}s)"
  grep -iE "Sessions|by turn|Mean TTFT|P99 TTFT|TTFO|Mean TPOT|prefix|cache" "$out/bench-cache-$cache.txt" || true
done

"$B/benchctl" sweep "${server[@]}" "${conv[@]}" --gpu-num 1 --server-metrics --io 256x128 \
  --concurrency 4,8,16,32,64 --prompts-per-concurrency 1 --min-prompts 8 --search bisect \
  --threshold "p99_ttfo:1000 tpot:50" --result-dir "$out/sweep" --dashboard-addr off --quiet \
  --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$FLAGS" \
    "workload=conversations: 4 turns; 256-token messages; 128-token answers; 500 ms think time" \
    "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
echo "== sweep done (${SECONDS}s)"
d=$(ls -d "$out"/sweep/*/ | head -1)
"$B/benchctl" report "$d" > /dev/null
python3 - "$d"/*_vllm_result.json <<'PY'
import json, sys
for j in json.load(open(sys.argv[1])):
    g = lambda k: "-" if j.get(k) is None else f"{j[k]:.1f}"
    by = lambda k: ", ".join("-" if v is None else f"{v:.0f}" for v in j.get(k) or [])
    print(f"c={j['concurrency']:<3} sessions {j.get('sessions')}/{j.get('sessions_completed')} "
          f"{j['completed']} ok {j['failed']} failed  TTFO {g('mean_ttfo_ms')}/{g('p99_ttfo_ms')} ms  "
          f"TPOT {g('mean_tpot_ms')} ms  prompt by turn [{by('mean_prompt_tokens_by_turn')}]  "
          f"TTFT by turn [{by('mean_ttft_ms_by_turn')}] ms  cached (usage) {j.get('cached_token_fraction')}  "
          f"server prefix hit {j.get('server_prefix_cache_hit_rate')}  invalid {j.get('invalid')}")
PY
cat "$d/summary.md"
tar czf "$out/conversations.tar.gz" -C "$out" sweep bench-cache-true.json bench-cache-false.json \
  bench-cache-true.txt bench-cache-false.txt
