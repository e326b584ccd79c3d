#!/bin/bash
# On the GPU machine (../shared/device/README.md): benchctl-agent's NVML readings beside
# nvidia-smi's at the same moments, idle and under load from the real server; `benchctl bench
# --gpu-num 1` against that server; the agent's CPU cost per sample at 500 ms and 100 ms.
#
# Usage (in one device run, after copying release binaries to .device-kit/bin):
#   bash scripts/gpu-check.sh .device-kit "$OUT"
# Writes pairs_idle.csv, pairs_load.csv, cost.txt, bench/ (result JSON, JSONL, raw.log,
# result.log) and the console output of each step under OUT.
set -u
kit=${1:?usage: gpu-check.sh KIT_DIR OUT_DIR}; out=${2:?usage: gpu-check.sh KIT_DIR OUT_DIR}
bin=$kit/bin
mkdir -p "$out/bench"
exec > >(tee "$out/console.txt") 2>&1

echo "== machine"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

echo "== agent cost per sample"
"$bin/benchctl-agent" --source nvml --gpu-num 1 --interval 500ms --measure-cost 20 | tee "$out/cost.txt"
"$bin/benchctl-agent" --source nvml --gpu-num 1 --interval 100ms --measure-cost 100 | tee -a "$out/cost.txt"
"$bin/benchctl-agent" --source nvml --gpu-num 1 --interval 100ms --energy-interval 1s --measure-cost 100 | tee -a "$out/cost.txt"

echo "== controller and agent"
"$bin/benchctl" controller --listen 127.0.0.1:7400 > "$out/controller.log" 2>&1 &
"$bin/benchctl-agent" --controller http://127.0.0.1:7400 --gpu-num 1 --interval 200ms > "$out/agent.log" 2>&1 &
sleep 3
"$bin/benchctl" agents --controller http://127.0.0.1:7400

# One line per moment: the agent's last sample (at most 200 ms old) and nvidia-smi's reading.
pairs() {
  local file=$1 n=$2
  echo "wall_s,agent_util,smi_util,agent_mem_mib,smi_mem_mib,agent_temp,smi_temp,agent_power_w,smi_power_w,agent_sm_mhz,smi_sm_mhz" > "$file"
  for _ in $(seq "$n"); do
    local a s
    a=$("$bin/benchctl" agents --controller http://127.0.0.1:7400 --json | python3 -c '
import json,sys; g=json.load(sys.stdin)[0]["gpus"][0]["last"]
print("%.0f,%.0f,%.0f,%.1f,%d" % (g["utilization_pct"], g["memory_used_bytes"]/1048576, g["temperature_c"], g["power_w"], g["sm_clock_mhz"]))')
    s=$(nvidia-smi --id=0 --query-gpu=utilization.gpu,memory.used,temperature.gpu,power.draw,clocks.sm --format=csv,noheader,nounits | tr -d ' ')
    IFS=, read -r au am at ap ac <<< "$a"; IFS=, read -r su sm st sp sc <<< "$s"
    echo "$(date +%s.%N),$au,$su,$am,$sm,$at,$st,$ap,$sp,$ac,$sc" >> "$file"
    sleep 0.5
  done
  column -s, -t < "$file" | head -40
}
echo "== idle: agent vs nvidia-smi"; pairs "$out/pairs_idle.csv" 10

echo "== starting the real server"
bash "$kit/start-server.sh" "$kit" 8000 || { tail -40 /tmp/serve.log; exit 1; }

echo "== bench --backend vllm on a strict server: the preflight must stop it with the server's message"
"$bin/benchctl" bench --base-url http://127.0.0.1:8000 --model-path /tmp/model --num-prompts 4 \
  --input-len 64 --output-len 8 --quiet; echo "exit $?"

echo "== bench --gpu-num 1 under load, and agent vs nvidia-smi meanwhile"
"$bin/benchctl" bench --base-url http://127.0.0.1:8000 --model-path /tmp/model --backend openai \
  --max-concurrency 32 --input-len 512 --output-len 256 --num-prompts 64 --gpu-num 1 --quiet \
  --save-result "$out/bench/real_c32_in512_out256.json" &
bench=$!
sleep 8
pairs "$out/pairs_load.csv" 16
wait $bench; echo "bench exit $?"

echo "== chat endpoint, small"
"$bin/benchctl" bench --base-url http://127.0.0.1:8000 --model-path /tmp/model --backend openai \
  --endpoint /v1/chat/completions --max-concurrency 8 --input-len 128 --output-len 64 --num-prompts 16 --quiet \
  --save-result "$out/bench/real_chat_c8.json"; echo "exit $?"

echo "== agents after the run"; "$bin/benchctl" agents --controller http://127.0.0.1:7400
cp /tmp/serve.log "$out/serve.log" 2>/dev/null
true
