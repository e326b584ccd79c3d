#!/usr/bin/env bash
# Usage: sim-results.sh BENCHCTL OUT_DIR: a bench and a sweep against `benchctl sim` with a fixed
# seed (simulated GPU telemetry), for comparing two builds with scripts/compare-results.py.
set -euo pipefail
B=$1; O=$2; rm -rf $O; mkdir -p $O
$B sim --port 0 --host 127.0.0.1 > $O/sim.log 2>&1 &
SIM=$!
trap "kill $SIM" EXIT
for i in $(seq 50); do url=$(grep -o 'http://127.0.0.1:[0-9]*' $O/sim.log | head -1 || true); [ -n "$url" ] && break; sleep 0.2; done
echo "sim at $url"
$B bench --base-url $url --max-concurrency 4 --input-len 128 --output-len 32 --num-prompts 24 --seed 7 --quiet --save-result $O/bench.json --gpu-num 1 --telemetry-source simulated > $O/bench.out 2>&1
$B sweep --base-url $url --io 128x32,256x16 --concurrency 1,2,4,8 --threshold "p99_ttft:2000 tpot:50" --search bisect --seed 7 --quiet --result-dir $O/sweep --dashboard-addr off --gpu-num 1 --telemetry-source simulated --metadata tp=1 > $O/sweep.out 2>&1
ls -R $O | head -50
