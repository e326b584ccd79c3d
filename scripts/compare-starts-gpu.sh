#!/bin/bash
# On the GPU machine (../shared/device/README.md): `benchctl compare` with the runs of each side
# taken on separate server starts. compare-repeats-gpu.sh showed (2026-12-02, docs/compare-gpu.md)
# that llama-server's speed differs more between two starts of the same server than between the
# runs of one sweep on one start, so an interval over one sweep's --repeats is too narrow to judge
# a configuration. Here every sweep has its own fresh llama-server and one run per test; a side is
# the comma list of N such sweeps: -ub 2048 twice (N sweeps each: expected within noise) and
# -ub 512 once (N sweeps), 1536x128 at c=16 and 64, 48 requests per run.
# One device call of under 10 minutes, the llama build (~320 s on a fresh machine) included;
# sweeps that would start after STOP_BY seconds are skipped (the compare then uses fewer runs).
# Outputs under OUT: compare-starts-same.{txt,md,html}, compare-starts-ub.{txt,md,html},
# console-compare-starts.txt and compare-starts.tar.gz with the sweeps.
# Usage: compare-starts-gpu.sh KIT OUT   (KIT/bin holds the release binaries, as compare-gpu.sh)
set -eu -o pipefail
kit=${1:?usage: compare-starts-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-compare-starts.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
echo "llama ready after ${SECONDS}s"
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
base="-np 256 -c 524288 -fa on --cache-ram 0 -b 4096"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
n=${N:-3}
# one sweep on a fresh server: DIR FLAGS…
fresh() {
  local dir=$1; shift
  if [ "$SECONDS" -ge "${STOP_BY:-520}" ]; then echo "skipped $dir (${SECONDS}s)"; return; fi
  bash "$here/llama-serve.sh" 8000 "$@"
  "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io "${IO:-1536x128}" \
    --concurrency "${GRID:-16,64}" --num-prompts "${NP:-48}" --warmup-requests 8 \
    --gpu-hour-cost 2.5 --result-dir "$dir" --dashboard-addr off --quiet \
    --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$*" "gpu=$gpu" \
      "model=random 1.4B Qwen3-shaped GGUF" > /dev/null
  echo "sweep $dir done after ${SECONDS}s"
}
# interleaved, so a drift of the machine over the call does not fall on one side only
for i in $(seq 1 "$n"); do
  # shellcheck disable=SC2086 # $base is a list of words
  fresh "$out/a/$i" $base -ub 2048
  # shellcheck disable=SC2086
  fresh "$out/b/$i" $base -ub 2048
  # shellcheck disable=SC2086
  fresh "$out/c/$i" $base -ub 512
done
side() { ls -d "$out/$1"/*/*/ 2>/dev/null | paste -sd, -; }
a=$(side a); b=$(side b); c=$(side c)
gate="p99_ttft:+10% mean_tpot:+5% output_throughput:-5%"
compare() {  # NAME A B
  "$B/benchctl" compare "$2" "$3" --fail-on "$gate" | tee "$out/compare-starts-$1.txt" || echo "compare-starts-$1 exited $? (the gate)"
  "$B/benchctl" compare "$2" "$3" --fail-on "$gate" --format markdown -o "$out/compare-starts-$1.md" || true
  "$B/benchctl" compare "$2" "$3" --format html -o "$out/compare-starts-$1.html"
}
compare same "$a" "$b"
compare ub "$a" "$c"
tar czf "$out/compare-starts.tar.gz" -C "$out" a b c
echo "done after ${SECONDS}s"
