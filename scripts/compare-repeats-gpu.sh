#!/bin/bash
# On the GPU machine (../shared/device/README.md): `benchctl compare` over runs, not only
# requests. One llama.cpp config (-ub 2048) swept twice with --repeats 3 (compare: within noise,
# the interval over runs), and one other config (-ub 512) with --repeats 3 (compare: the
# differences the physical batch size makes); then, time allowing, a rate sweep
# (--search-axis rate) of a few rates against the second server.
#
# It must fit in ONE device call of under 9 minutes, the llama build included (~210 s on a fresh
# machine), so the sweeps are kept short: one combination (1536x128), two concurrencies (16 and
# 64: GRID), 48 requests per run (NP), no threshold (every point, 3 runs each), 8 warm-up
# requests; about 40 s per sweep. The rate sweep runs only while under 6.5 minutes (RATE_BY).
# Outputs under OUT: compare-same.{txt,md,html} (ub2048 twice), compare-ub.{txt,md,html}
# (ub2048 against ub512), rate/ (the rate sweep and its summary), console-compare-repeats.txt,
# and compare-repeats.tar.gz with all of it.
# Usage: compare-repeats-gpu.sh KIT OUT   (KIT/bin holds the release binaries, as compare-gpu.sh)
set -eu -o pipefail
kit=${1:?usage: compare-repeats-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-compare-repeats.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
echo "llama ready after ${SECONDS}s"
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
base="-np 256 -c 524288 -fa on --cache-ram 0 -b 4096"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
io=${IO:-1536x128}
# one sweep: DIR FLAGS (every grid point, --repeats 3)
repeated() {
  "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io "$io" \
    --concurrency "${GRID:-16,64}" --num-prompts "${NP:-48}" --warmup-requests 8 --repeats 3 \
    --gpu-hour-cost 2.5 --result-dir "$1" --dashboard-addr off --quiet \
    --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$2" "gpu=$gpu" \
      "model=random 1.4B Qwen3-shaped GGUF"
  echo "sweep $1 done after ${SECONDS}s"
}
# Every sweep starts on a freshly started server (RESTART=0: the second -ub 2048 sweep reuses the
# first one's server). A llama-server that has served earlier runs is not the same server: run on
# 2026-12-02 without the restart, the second sweep's mean TPOT was +79 % at c=16 (the slots keep
# the earlier requests' KV cells), and `compare` rightly called it worse (docs/compare-gpu.md).
serve() { bash "$here/llama-serve.sh" 8000 "$@"; }  # FLAGS…
# shellcheck disable=SC2086 # $flags is a list of words
flags="$base -ub 2048"
serve $flags
repeated "$out/ub2048-a" "$flags"
[ "${RESTART:-1}" = 0 ] || serve $flags
repeated "$out/ub2048-b" "$flags"
flags="$base -ub 512"
serve $flags
repeated "$out/ub512" "$flags"
a=$(ls -d "$out"/ub2048-a/*/ | head -1); a2=$(ls -d "$out"/ub2048-b/*/ | head -1)
b=$(ls -d "$out"/ub512/*/ | head -1)
gate="p99_ttft:+10% mean_tpot:+5% output_throughput:-5%"
# the same config twice: within noise over runs (the gate passes); then the other config
compare() {  # NAME A B
  "$B/benchctl" compare "$2" "$3" --fail-on "$gate" | tee "$out/compare-$1.txt" || echo "compare-$1 exited $? (the gate)"
  "$B/benchctl" compare "$2" "$3" --fail-on "$gate" --format markdown -o "$out/compare-$1.md" || true
  "$B/benchctl" compare "$2" "$3" --format html -o "$out/compare-$1.html"
}
compare same "$a" "$a2"
compare ub "$a" "$b"
if [ "$SECONDS" -lt "${RATE_BY:-390}" ]; then
  "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io "$io" \
    --search-axis rate --rates "${RATES:-2,4,8,16}" --prompts-per-concurrency 4 --min-prompts 16 \
    --warmup-requests 8 --threshold "p99_ttft:2000 tpot:50" --gpu-hour-cost 2.5 \
    --result-dir "$out/rate" --dashboard-addr off --quiet \
    --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$flags" "gpu=$gpu" || echo "rate sweep exited $?"
  r=$(ls -d "$out"/rate/*/ 2>/dev/null | head -1)
  [ -n "$r" ] && cat "$r/summary.md"
  echo "rate sweep done after ${SECONDS}s"
else
  echo "no time left for the rate sweep (${SECONDS}s)"
fi
tar czf "$out/compare-repeats.tar.gz" -C "$out" ub2048-a ub2048-b ub512 $(cd "$out" && ls -d rate 2>/dev/null) \
  compare-same.txt compare-same.md compare-same.html compare-ub.txt compare-ub.md compare-ub.html
echo "done after ${SECONDS}s: $out/compare-same.html, $out/compare-ub.html"
