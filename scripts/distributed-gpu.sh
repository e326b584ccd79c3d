#!/bin/bash
# On the GPU machine (../shared/device/README.md): the distributed mode with a real server and
# real NVML. etcd, two controllers (A elected, B standing by, a shared --data-dir), an agent
# reading NVML, two load workers, all separate processes, each listener on its own loopback
# address. A threshold sweep is submitted through etcd and followed. Mid-test, in turn: the leader
# is killed with SIGKILL (the standby takes over), a load worker is killed with SIGKILL and
# restarted 3 s later, the agent likewise, and etcd is stopped for 5 s and restarted. The sweep
# must finish with every test once and each loss recorded.
#
# Usage (in one device run, with release binaries and etcd (gzipped: KIT/bin/etcd.gz, Debian's
# etcd-server 3.4 binary) in KIT/bin):
#   bash scripts/distributed-gpu.sh .device-kit "$OUT/distributed"
set -eu
kit=${1:?usage: distributed-gpu.sh KIT_DIR OUT_DIR}; out=${2:?usage: distributed-gpu.sh KIT_DIR OUT_DIR}
B=$kit/bin
mkdir -p "$out/logs"
logs=$out/logs
data=$out/data
exec > >(tee "$out/console.txt") 2>&1
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
bash "$kit/start-server.sh" "$kit" 8000
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model --backend openai)

E=http://127.0.0.1:2379
gunzip -c "$B/etcd.gz" > /tmp/benchctl-etcd && chmod +x /tmp/benchctl-etcd
/tmp/benchctl-etcd --version | head -1
/tmp/benchctl-etcd --data-dir /tmp/benchctl-etcd-data --listen-client-urls $E --advertise-client-urls $E \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 > "$logs/etcd.log" 2>&1 &
ETCD=$!
sleep 2
ctl=(--etcd $E --lease-ttl 3 --data-dir "$data" --dashboard-addr off)
"$B/benchctl" controller --listen 127.0.0.2:7400 "${ctl[@]}" > "$logs/controller-a.log" 2>&1 &
A=$!
sleep 2 # A is elected before B starts
"$B/benchctl" controller --listen 127.0.0.3:7400 "${ctl[@]}" > "$logs/controller-b.log" 2>&1 &
"$B/benchctl-agent" --etcd $E --node-name gpu-node --interval 200ms > "$logs/agent.log" 2>&1 &
AG=$!
"$B/benchctl-loadgen" --etcd $E --name w1 > "$logs/w1.log" 2>&1 &
"$B/benchctl-loadgen" --etcd $E --name w2 > "$logs/w2.log" 2>&1 &
W2=$!
for i in $(seq 1 60); do
  "$B/benchctl" agents --controller http://127.0.0.2:7400 > "$out/agents.txt" 2>&1 \
    && grep -q "load workers: 2" "$out/agents.txt" && grep -q "util" "$out/agents.txt" && break
  sleep 0.5
done
cat "$out/agents.txt"

echo "== probes (the threshold between c=1 and c=16's mean TPOT)"
for c in 1 16; do
  "$B/benchctl" bench "${server[@]}" --input-len 256 --output-len 64 --max-concurrency $c \
    --num-prompts $((c * 2 > 4 ? c * 2 : 4)) --quiet --save-result "$out/probe_c$c.json" > /dev/null
done
bound=$(python3 -c "
import json
a = json.load(open('$out/probe_c1.json'))['mean_tpot_ms']; b = json.load(open('$out/probe_c16.json'))['mean_tpot_ms']
print(round((a + b) / 2))")
echo "threshold: tpot:$bound p99_ttft:3000"

echo "== sweep submitted through etcd"
id=$("$B/benchctl" sweep --etcd $E "${server[@]}" --gpu-num 1 --dtype bfloat16 \
  --io 256x64,1024x64 --concurrency 1,2,4,8,16,32 --prompts-per-concurrency 2 --min-prompts 4 \
  --threshold "tpot:$bound p99_ttft:3000" --search bisect --workers 2 \
  --metadata "server=transformers serve --continuous-batching,model=random 1.4B Qwen3-shaped,run=distributed faults" \
  --detach)
echo "sweep id: $id"
"$B/benchctl" sweep attach "$id" --etcd $E > "$out/attach.txt" 2>&1 &
att=$!
# until N tests are done and one has been running for S seconds (0 when the sweep has ended)
mid_test() {
  until "$B/benchctl" sweeps --etcd $E --json 2>/dev/null | python3 -c "
import json, sys
s = json.load(sys.stdin)[0]
sys.exit(0 if s['status'] not in ('queued', 'running') or s['tests_done'] >= $1 and s['detail'].startswith('running') else 1)"; do
    sleep 0.5
  done
  sleep "$2"
  "$B/benchctl" sweeps --etcd $E
}
mid_test 2 2
echo "== $(date +%T.%N): kill -9 of the leader (controller A) mid-test"
kill -9 $A
mid_test 4 2
echo "== $(date +%T.%N): kill -9 of load worker w2 mid-test; restarted 3 s later"
kill -9 $W2
sleep 3
"$B/benchctl-loadgen" --etcd $E --name w2 > "$logs/w2-restarted.log" 2>&1 &
mid_test 6 4
echo "== $(date +%T.%N): kill -9 of the agent mid-test; restarted 3 s later"
kill -9 $AG
sleep 3
"$B/benchctl-agent" --etcd $E --node-name gpu-node --interval 200ms > "$logs/agent-restarted.log" 2>&1 &
mid_test 8 2
echo "== $(date +%T.%N): etcd stopped mid-test (SIGKILL), restarted 5 s later"
kill -9 $ETCD
sleep 5
/tmp/benchctl-etcd --data-dir /tmp/benchctl-etcd-data --listen-client-urls $E --advertise-client-urls $E \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster default=http://127.0.0.1:2380 > "$logs/etcd-restarted.log" 2>&1 &
echo "== $(date +%T.%N): etcd restarted"
rc=0; wait $att || rc=$?
echo "== the client following the sweep exited $rc"
cat "$out/attach.txt"
"$B/benchctl" sweeps --etcd $E
"$B/benchctl" report "$data/$id" > /dev/null && echo "report: $data/$id/report.html"
