#!/bin/bash
# On the GPU machine (../shared/device/README.md): the wedged-server case of issue 15 against
# llama.cpp's llama-server. A small sweep runs; mid-test the server is stopped (SIGSTOP on
# /tmp/llama-server.pid), so it accepts connections and answers nothing. What the user sees is
# captured (OUT/console-wedge.txt, OUT/sweep-stderr.txt): the lines naming what benchctl waits
# for, the test ending with counted failures (stall/timeout) and a sentence, a non-zero exit.
# Then the server is continued (SIGCONT) and `benchctl sweep --resume` finishes the sweep.
# About 2-3 minutes (plus about 4.5 minutes on a fresh machine to build llama-server and the model).
# Usage: wedge-gpu.sh KIT OUT   (KIT/bin holds the release benchctl, gzipped or not)
# WEDGE_SIM=1 runs the same against `benchctl sim` in its own process (a dry run anywhere).
set -eu
kit=${1:?usage: wedge-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-wedge.txt") 2>&1
if [ "${WEDGE_SIM:-0}" = 1 ]; then
  port=18015; pidfile=$out/sim.pid
  "$B/benchctl" sim --port $port --decode-step-base-ms 10 > "$out/sim.log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 60); do curl -sf localhost:$port/v1/models > /dev/null && break; sleep 0.5; done
  server=(--base-url http://127.0.0.1:$port)
else
  port=8000; pidfile=/tmp/llama-server.pid
  [ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
    bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
  bash "$here/llama-serve.sh" 8000 -np 32 -c 131072 -fa on --cache-ram 0
  server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
fi
pid() { cat "$pidfile"; }
trap 'kill -CONT "$(pid)" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true' EXIT
# short limits so that a wedged test ends in seconds: a request fails after 10 s without a byte
limits=(--timeout 30s --stall-timeout 10s --preflight-timeout 20s)
rm -rf "$out/wedge"
set +e
echo "== $(date +%T) sweep started; the server will be stopped during its third test"
timeout 150 "$B/benchctl" sweep "${server[@]}" "${limits[@]}" --io 512x256 --concurrency 1,2,4,8,16 \
  --prompts-per-concurrency 4 --min-prompts 8 --warmup-requests 0 --result-dir "$out/wedge" \
  --dashboard-addr off --server-metrics off 2> "$out/sweep-stderr.txt" &
sweep=$!
# wait for two finished tests, then stop the server in the middle of the third
for _ in $(seq 1 300); do
  n=$(python3 -c "import json,glob,sys; f=glob.glob('$out/wedge/*/*_vllm_result.json'); print(len(json.load(open(f[0]))) if f else 0)" 2>/dev/null || echo 0)
  [ "$n" -ge 2 ] && break
  sleep 0.2
done
sleep 1
echo "== $(date +%T) SIGSTOP the server (pid $(pid)) after $n finished tests"
kill -STOP "$(pid)"
t0=$(date +%s)
wait $sweep; rc=$?
echo "== $(date +%T) the sweep ended after $(( $(date +%s) - t0 )) s with the server stopped: exit status $rc"
echo "== what the user saw (stderr):"
cat "$out/sweep-stderr.txt"
d=$(ls -d "$out"/wedge/*/ | head -1)
python3 - "$d" <<'PY'
import json, glob, sys
for j in json.load(open(glob.glob(sys.argv[1] + "/*_vllm_result.json")[0])):
    print(f"c={j['concurrency']:<3} completed {j['completed']:>3} failed {j['failed']:>3} {json.dumps(j.get('failed_by_kind', {}))} "
          f"{json.dumps(j.get('first_error', {}))[:300]}")
PY
echo "== $(date +%T) SIGCONT the server"
kill -CONT "$(pid)"
for _ in $(seq 1 60); do curl -sf localhost:$port/v1/models > /dev/null && break; sleep 0.5; done
echo "== $(date +%T) benchctl sweep --resume $d"
timeout 150 "$B/benchctl" sweep --resume "$d" "${server[@]}" "${limits[@]}" --dashboard-addr off \
  2> "$out/resume-stderr.txt"
echo "== resume exit status $?"
tail -20 "$out/resume-stderr.txt"
grep -A20 "Every concurrency" "$d/summary.md" || true
