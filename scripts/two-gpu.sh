#!/bin/bash
# On the two-GPU machine kind (nvidia-h200-x2; ../shared/device/README.md): llama.cpp's llama-server
# serving one model split over both GPUs, measured by benchctl with per-GPU telemetry. One device
# call per mode (each under 10 minutes; calls made back to back find the machine warm, so
# llama-server is built once):
#   local KIT OUT        builds llama-server and the model if needed, serves the model over GPUs 0,1
#                        (--split-mode $SPLIT, -ngl all), runs `benchctl sweep --gpu-num 2 --tp 2
#                        --server-metrics` over two IO shapes with a threshold, and pairs the agent's
#                        per-GPU readings with nvidia-smi's for both GPUs while a test runs
#   distributed KIT OUT  the same sweep with etcd, a controller, `benchctl-agent --gpu-num 2` as its
#                        own process and two load workers
# KIT holds the release binaries in KIT/bin (benchctl, benchctl-agent, benchctl-loadgen, etcd.gz),
# gzipped as they travel. Environment: SPLIT (layer|row, default layer), FLAGS (llama-server flags
# besides the split; default below), PPC (requests per test per unit of concurrency, default 2).
set -eu
mode=${1:?usage: two-gpu.sh local|distributed KIT OUT}
kit=${2:?KIT}; out=${3:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-$mode.txt") 2>&1
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
nvidia-smi --query-gpu=index,name,driver_version,memory.total --format=csv,noheader
n=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
[ "$n" -ge 2 ] || { echo "this machine has $n GPU(s): the two-GPU run needs the nvidia-h200-x2 kind"; exit 2; }
split=${SPLIT:-layer}
flags=${FLAGS:--np 256 -c 524288 -fa on --cache-ram 0 -b 4096 -ub 2048}
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
io=512x128,1536x128
grid=1,2,4,8,16,32,64,128,256
threshold="p99_ttft:2000 tpot:50"
ppc=${PPC:-2}
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  CUDA_VISIBLE_DEVICES=0 bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
# shellcheck disable=SC2086
CUDA_VISIBLE_DEVICES=0,1 bash "$here/llama-serve.sh" 8000 --split-mode "$split" $flags
grep -iE "CUDA[01]|split|offloaded" /tmp/llama-server.log | head -12 || true
meta=(--metadata "server=llama.cpp llama-server (CUDA; llama-cpp-python 0.3.36 vendor)"
  "server_flags=CUDA_VISIBLE_DEVICES=0,1 -ngl 999 --split-mode $split $flags"
  "model=random 1.4B Qwen3-shaped GGUF" "gpu=2 x $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)")

# The agent's last per-GPU sample beside nvidia-smi's reading of the same GPU, N moments.
pairs() {
  local file=$1 n=$2 ctl=$3
  echo "wall_s,gpu,agent_util,smi_util,agent_mem_mib,smi_mem_mib,agent_power_w,smi_power_w,agent_sm_mhz,smi_sm_mhz" > "$file"
  for _ in $(seq "$n"); do
    "$B/benchctl" agents --controller "$ctl" --json > /tmp/agents.json || continue
    for g in 0 1; do
      a=$(python3 -c '
import json,sys; d=json.load(open("/tmp/agents.json")); g=[x for x in d[0]["gpus"] if x["index"]==int(sys.argv[1])][0]["last"]
print("%.0f,%.0f,%.1f,%d" % (g["utilization_pct"], g["memory_used_bytes"]/1048576, g["power_w"], g["sm_clock_mhz"]))' $g)
      s=$(nvidia-smi --id=$g --query-gpu=utilization.gpu,memory.used,power.draw,clocks.sm --format=csv,noheader,nounits | tr -d ' ')
      IFS=, read -r au am ap ac <<< "$a"; IFS=, read -r su sm sp sc <<< "$s"
      echo "$(date +%s.%N),$g,$au,$su,$am,$sm,$ap,$sp,$ac,$sc" >> "$file"
    done
    sleep 0.5
  done
  column -s, -t < "$file" | head -50
}

summary() {
  local d=$1
  "$B/benchctl" report "$d" > /dev/null
  cat "$d/summary.md"
  echo "== result.log (head)"; head -30 "$d"/*result.log 2>/dev/null || ls "$d"
  echo "== raw.log GPU lines (head)"; grep -m 12 -iE "gpu" "$d"/*raw.log 2>/dev/null || true
  python3 - "$d" <<'PY'
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/*_vllm_result.json"))[:40]:
    j = json.load(open(f))
    per = [g for n in j.get("gpu_telemetry") or [] for g in n["gpus"]]
    print(f.rsplit("/", 1)[-1], "completed", j["completed"], "failed", j["failed"],
          "tok/s %.0f" % j["output_throughput"], "GPUs", j.get("gpu_count"), "per-GPU entries", len(per),
          "energy J", j.get("gpu_energy_j"), "J/token", j.get("gpu_joules_per_output_token"))
PY
}

case $mode in
local)
  "$B/benchctl" controller --listen 127.0.0.1:7400 --dashboard-addr off > "$out/controller.log" 2>&1 &
  "$B/benchctl-agent" --controller http://127.0.0.1:7400 --gpu-num 2 --interval 200ms > "$out/agent.log" 2>&1 &
  sleep 3
  echo "== idle: agent vs nvidia-smi, both GPUs"; pairs "$out/pairs_idle.csv" 6 http://127.0.0.1:7400
  "$B/benchctl" bench "${server[@]}" --backend openai --max-concurrency 64 --input-len 512 --output-len 512 \
    --num-prompts 256 --gpu-num 2 --quiet --save-result "$out/load_c64.json" > "$out/load_c64.txt" 2>&1 &
  sleep 8
  echo "== under load: agent vs nvidia-smi, both GPUs"; pairs "$out/pairs_load.csv" 12 http://127.0.0.1:7400
  wait %3 || echo "load bench exited $?"
  kill %1 %2 2>/dev/null || true
  "$B/benchctl" sweep "${server[@]}" --gpu-num 2 --tp 2 --server-metrics --io $io --concurrency $grid \
    --prompts-per-concurrency "$ppc" --min-prompts 16 --threshold "$threshold" --search bisect \
    --result-dir "$out/sweep" --dashboard-addr off --quiet "${meta[@]}" "run=local, two GPUs"
  summary "$(ls -d "$out"/sweep/*/ | head -1)"
  tar czf "$out/sweep.tar.gz" -C "$out/sweep" .
  ;;
distributed)
  E=http://127.0.0.1:2379
  logs=$out/logs; mkdir -p "$logs"
  gunzip -c "$B/etcd.gz" > /tmp/benchctl-etcd && chmod +x /tmp/benchctl-etcd
  rm -rf /tmp/benchctl-etcd-data
  /tmp/benchctl-etcd --data-dir /tmp/benchctl-etcd-data --listen-client-urls $E --advertise-client-urls $E \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 > "$logs/etcd.log" 2>&1 &
  sleep 2
  "$B/benchctl" controller --listen 127.0.0.2:7400 --etcd $E --lease-ttl 3s --data-dir "$out/data" \
    --dashboard-addr off > "$logs/controller.log" 2>&1 &
  sleep 2
  "$B/benchctl-agent" --etcd $E --node-name gpu-node --gpu-num 2 --interval 200ms > "$logs/agent.log" 2>&1 &
  "$B/benchctl-loadgen" --etcd $E --name w1 > "$logs/w1.log" 2>&1 &
  "$B/benchctl-loadgen" --etcd $E --name w2 > "$logs/w2.log" 2>&1 &
  for _ in $(seq 1 60); do
    "$B/benchctl" agents --controller http://127.0.0.2:7400 > "$out/agents.txt" 2>&1 \
      && grep -q "load workers: 2" "$out/agents.txt" && grep -q "util" "$out/agents.txt" && break
    sleep 0.5
  done
  cat "$out/agents.txt"
  "$B/benchctl" sweep --etcd $E "${server[@]}" --gpu-num 2 --tp 2 --server-metrics --io $io --concurrency $grid \
    --prompts-per-concurrency "$ppc" --min-prompts 16 --threshold "$threshold" --search bisect --workers 2 \
    --quiet "${meta[@]}" "run=distributed, agent process with --gpu-num 2, two load workers" \
    > "$out/follow.txt" 2>&1 || echo "the sweep client exited $?"
  tail -20 "$out/follow.txt"
  summary "$(ls -d "$out"/data/*/ | head -1)"
  tar czf "$out/distributed.tar.gz" -C "$out/data" .
  ;;
esac
cp /tmp/llama-server.log "$out/llama-server-$mode.log" 2>/dev/null || true
