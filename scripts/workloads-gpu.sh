#!/bin/bash
# On the GPU machine (../shared/device/README.md): production-like workloads against llama.cpp's
# llama-server (CUDA), the cached-token fraction as llama.cpp reports it. One device call per mode
# (each under 4 minutes once llama-server is built; a fresh machine first builds it with the kit's
# start-llama.sh, about 4.5 minutes):
#   prefix KIT OUT   shared system prompts (--prefix-groups 4 --prefix-len 1024), then a control
#                    without them, the control's prompts again (a warm cache, flagged), and again
#                    with --reset-prefix-cache (llama.cpp's /slots/N?action=erase)
#   trace KIT OUT    the generated Mooncake example trace (deploy/traces/) replayed on its
#                    timestamps, its shared blocks against llama.cpp's slot cache
# KIT holds the release binaries in KIT/bin (benchctl, gzipped or not).
#
# What llama.cpp does (tools/server/ of the kit's llama-src.tar.xz): each slot keeps its last
# prompt; a request goes to the idle slot whose prompt shares the longest prefix with it
# (--slot-prompt-similarity, default 0.1) and reuses that prefix (cache_prompt, default on).
# usage.prompt_tokens_details.cached_tokens is that reused prefix (n_prompt_tokens_cache), and
# /metrics counts it in llamacpp:prompt_tokens_cached_total (llamacpp:prompt_tokens_total counts
# the rest). --cache-ram 0 turns the RAM prompt cache off, so the slots are the whole cache, and
# --slot-save-path enables POST /slots/N?action=erase, which empties a slot.
set -eu
mode=${1:?usage: workloads-gpu.sh prefix|trace KIT OUT}
kit=${2:?KIT}; out=${3:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-$mode.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
mkdir -p /tmp/llama-slots
# 32 slots of 8192 tokens (the example trace's longest request is 4381 tokens with its output), slots erasable
flags="-np 32 -c 262144 -fa on --cache-ram 0 --slot-save-path /tmp/llama-slots"
# shellcheck disable=SC2086
bash "$here/llama-serve.sh" 8000 $flags
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model --gpu-num 1 --server-metrics --quiet)
line() { python3 - "$@" <<'PY'
import json, sys
for f in sys.argv[1:]:
    j = json.load(open(f))
    p = lambda k: "-" if j.get(k) is None else f"{j[k] * 100:.1f} %"
    print(f"{f.rsplit('/', 1)[-1]:<18} {j['completed']:>4} ok {j['failed']:>3} failed  TTFT {j['mean_ttft_ms']:.1f}/{j['p99_ttft_ms']:.1f} ms  "
          f"cached (usage) {p('cached_token_fraction')} = {j.get('total_cached_tokens')} of {j['total_input_tokens']} tokens, "
          f"expected {p('expected_cached_token_fraction')}, server hit rate {p('server_prefix_cache_hit_rate')}  "
          f"warm_cache {j.get('warm_cache')}  reset: {j.get('prefix_cache_reset')}  dispatch lag {j.get('mean_dispatch_lag_ms')}")
PY
}
run() { # NAME ARGS...: one bench, its summary in NAME.txt, its result in NAME.json
  name=$1; shift
  echo "+ benchctl bench $*"
  "$B/benchctl" bench "${server[@]}" "$@" --save-result "$out/$name.json" > "$out/$name.txt" 2>&1 ||
    { echo "$name failed:"; tail -5 "$out/$name.txt"; }
  grep -E "WARNING|prefix cache reset" "$out/$name.txt" || true
  line "$out/$name.json" || true
}
common=(--input-len 256 --output-len 128 --max-concurrency 16 --num-prompts 128 --warmup-requests 16)
case $mode in
prefix)
  run shared --reset-prefix-cache "${common[@]}" --prefix-groups 4 --prefix-len 1024 --seed 1
  run control --reset-prefix-cache --input-len 1280 --output-len 128 --max-concurrency 16 --num-prompts 128 --warmup-requests 16 --seed 2
  # the same prompts again: the slots still hold the control's last 32 prompts
  run repeated --input-len 1280 --output-len 128 --max-concurrency 16 --num-prompts 128 --warmup-requests 16 --seed 2
  run repeated-reset --reset-prefix-cache --input-len 1280 --output-len 128 --max-concurrency 16 --num-prompts 128 --warmup-requests 16 --seed 2
  ;;
trace)
  run trace --reset-prefix-cache --dataset mooncake --dataset-path "$here/../deploy/traces/mooncake-example.jsonl" --trace-speedup 1
  run trace-x4 --reset-prefix-cache --dataset mooncake --dataset-path "$here/../deploy/traces/mooncake-example.jsonl" --trace-speedup 4
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
cp /tmp/llama-server.flags "$out/llama-server.flags"
