#!/bin/bash
# On the GPU machine (../shared/device/README.md): llama.cpp's llama-server (CUDA) as the target,
# benchctl with --server-metrics and real NVML. Three modes, one device call each (each under
# 10 minutes; the machine stays warm between calls made back to back, so llama-server is built once):
#   tune KIT OUT         builds llama-server and the model (kit's start-llama.sh), then benches
#                        c=16 and c=256 (512 in / 128 out) under each candidate set of server flags
#   sweep KIT OUT        restarts llama-server with $FLAGS and runs the threshold sweep, local mode
#   distributed KIT OUT  the same sweep through etcd: a controller, an agent and two load workers
#   noise KIT OUT        the tests around both boundaries, three runs each (no threshold): how far a
#                        boundary moves between two runs of the same sweep
# KIT holds the release binaries in KIT/bin (benchctl, benchctl-agent, benchctl-loadgen, etcd.gz).
set -eu
mode=${1:?usage: server-metrics-gpu.sh tune|sweep|distributed|noise KIT OUT}
kit=${2:?KIT}; out=${3:?OUT}
B=$kit/bin
# the binaries travel gzipped (the working tree that travels is limited to 64 MiB)
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-$mode.txt") 2>&1
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
io=512x128,1536x128
# requests per test: PPC × its concurrency, at least 16
ppc=${PPC:-2}
# a fresh machine: build llama-server and the model first (about 4.5 minutes)
[ "$mode" = tune ] || [ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
grid=1,2,4,8,16,32,64,128,256
threshold="p99_ttft:2000 tpot:50"
line() { python3 - "$@" <<'PY'
import json, sys
def rows():
    for f in sys.argv[1:]:
        d = json.load(open(f))
        for j in d if isinstance(d, list) else [d]:
            yield j.get("test_id", f.rsplit("/", 1)[-1]), j
for name, j in rows():
    g = lambda k, s=1: "-" if j.get(k) is None else f"{j[k] * s:.1f}"
    m = j.get("server_tokens_mismatch")
    print(f"{name:<28} {j['completed']:>4} ok {j['failed']:>3} failed  {j['output_throughput']:8.1f} tok/s  "
          f"TTFT {g('mean_ttft_ms')}/{g('p99_ttft_ms')} ms  TPOT {g('mean_tpot_ms')} ms  GPU {g('gpu_utilization_mean_pct')} %  "
          f"server running {g('server_running_mean')}/{g('server_running_max')} waiting {g('server_waiting_mean')}  "
          f"tokens server {j.get('server_prompt_tokens')}/{j.get('server_generation_tokens')} client {j['total_input_tokens']}/{j['total_output_tokens']} "
          f"{'MISMATCH ' + json.dumps(m) if m else 'agree'}")
PY
}

case $mode in
tune)
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
  mkdir -p "$out/tune"
  while IFS='|' read -r name flags; do
    [ -n "$name" ] || continue
    # shellcheck disable=SC2086
    bash "$here/llama-serve.sh" 8000 $flags
    for c in 16 256; do
      "$B/benchctl" bench "${server[@]}" --gpu-num 1 --server-metrics --input-len 512 --output-len 128 \
        --max-concurrency $c --num-prompts $((c > 32 ? c : 32)) --warmup-requests 16 --quiet \
        --save-result "$out/tune/${name}_c$c.json" > "$out/tune/${name}_c$c.txt" 2>&1 || echo "$name c=$c failed"
      line "$out/tune/${name}_c$c.json" || true
    done
  done <<'CONFIGS'
kit|-np 256 -c 524288 -fa on --cache-ram 0 --kv-unified
split|-np 256 -c 524288 -fa on --cache-ram 0
split-ub2048|-np 256 -c 524288 -fa on --cache-ram 0 -b 4096 -ub 2048
CONFIGS
  ;;
sweep)
  # shellcheck disable=SC2086
  bash "$here/llama-serve.sh" 8000 $FLAGS
  "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io $io --concurrency $grid \
    --prompts-per-concurrency $ppc --min-prompts 16 --threshold "$threshold" --search bisect \
    --result-dir "$out/sweep" --dashboard-addr off --quiet \
    --metadata "server=llama.cpp llama-server (CUDA; llama-cpp-python 0.3.36 vendor)" "server_flags=$FLAGS" \
      "model=random 1.4B Qwen3-shaped GGUF" "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  d=$(ls -d "$out"/sweep/*/ | head -1)
  "$B/benchctl" report "$d" > /dev/null
  line "$d"/*_vllm_result.json
  cat "$d/summary.md"
  tar czf "$out/sweep.tar.gz" -C "$out/sweep" .
  ;;
noise)
  # shellcheck disable=SC2086
  bash "$here/llama-serve.sh" 8000 $FLAGS
  for shape in 512x128:124,128,129,132 1536x128:56,60,64; do
    "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io "${shape%%:*}" --concurrency "${shape#*:}" \
      --prompts-per-concurrency $ppc --min-prompts 16 --warmup-requests 16 --repeats 3 --result-dir "$out/noise" --dashboard-addr off --quiet \
      --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$FLAGS" "run=noise around the boundary"
  done
  for d in "$out"/noise/*/; do "$B/benchctl" report "$d" > /dev/null; line "$d"/*_vllm_result.json; done
  tar czf "$out/noise.tar.gz" -C "$out/noise" .
  ;;
distributed)
  E=http://127.0.0.1:2379
  logs=$out/logs; mkdir -p "$logs"
  # shellcheck disable=SC2086
  bash "$here/llama-serve.sh" 8000 $FLAGS
  gunzip -c "$B/etcd.gz" > /tmp/benchctl-etcd && chmod +x /tmp/benchctl-etcd
  rm -rf /tmp/benchctl-etcd-data
  /tmp/benchctl-etcd --data-dir /tmp/benchctl-etcd-data --listen-client-urls $E --advertise-client-urls $E \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 > "$logs/etcd.log" 2>&1 &
  sleep 2
  "$B/benchctl" controller --listen 127.0.0.2:7400 --etcd $E --lease-ttl 3s --data-dir "$out/data" \
    --dashboard-addr off > "$logs/controller.log" 2>&1 &
  sleep 2
  "$B/benchctl-agent" --etcd $E --node-name gpu-node --interval 200ms > "$logs/agent.log" 2>&1 &
  "$B/benchctl-loadgen" --etcd $E --name w1 > "$logs/w1.log" 2>&1 &
  "$B/benchctl-loadgen" --etcd $E --name w2 > "$logs/w2.log" 2>&1 &
  for i in $(seq 1 60); do
    "$B/benchctl" agents --controller http://127.0.0.2:7400 > "$out/agents.txt" 2>&1 \
      && grep -q "load workers: 2" "$out/agents.txt" && grep -q "util" "$out/agents.txt" && break
    sleep 0.5
  done
  cat "$out/agents.txt"
  "$B/benchctl" sweep --etcd $E "${server[@]}" --gpu-num 1 --server-metrics --io $io --concurrency $grid \
    --prompts-per-concurrency $ppc --min-prompts 16 --threshold "$threshold" --search bisect --workers 2 \
    --quiet --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$FLAGS" "run=distributed with 2 workers" \
    > "$out/follow.txt" 2>&1 || echo "the sweep client exited $?"
  tail -20 "$out/follow.txt"
  d=$(ls -d "$out"/data/*/ | head -1)
  "$B/benchctl" report "$d" > /dev/null
  line "$d"/*_vllm_result.json
  cat "$d/summary.md"
  tar czf "$out/distributed.tar.gz" -C "$out/data" .
  ;;
esac
