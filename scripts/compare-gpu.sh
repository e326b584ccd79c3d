#!/bin/bash
# On the GPU machine (../shared/device/README.md): two small sweeps against llama.cpp's
# llama-server (CUDA) that differ in one server setting, the physical batch size (-ub 512 against
# -ub 2048), then `benchctl compare` over them: the terminal table, Markdown and the HTML page
# with both frontiers overlaid, and each sweep's report (frontier charts, cost at 2.5 per GPU hour).
# About 3 to 5 minutes once llama-server and the model are built (a fresh machine builds them
# first with the kit's start-llama.sh, about 4.5 minutes more).
# Usage: compare-gpu.sh KIT OUT   (KIT/bin holds the release binaries, as server-metrics-gpu.sh)
set -eu
kit=${1:?usage: compare-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl*.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$out"
exec > >(tee -a "$out/console-compare.txt") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
[ -x /tmp/llama/build/bin/llama-server ] && [ -f /tmp/model.gguf ] ||
  bash "$kit/llama/start-llama.sh" "$kit" 8000 2048 28 256 2048
server=(--base-url http://127.0.0.1:8000 --model-path /tmp/model --model-name /tmp/model)
base="-np 256 -c 524288 -fa on --cache-ram 0 -b 4096"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
for ub in 512 2048; do
  flags="$base -ub $ub"
  # shellcheck disable=SC2086
  bash "$here/llama-serve.sh" 8000 $flags
  "$B/benchctl" sweep "${server[@]}" --gpu-num 1 --server-metrics --io ${IO:-512x128,1536x128} \
    --concurrency ${GRID:-4,16,64,128,256} --prompts-per-concurrency ${PPC:-2} --min-prompts 32 --warmup-requests 16 \
    --threshold "p99_ttft:2000 tpot:50" --gpu-hour-cost 2.5 --result-dir "$out/ub$ub" \
    --dashboard-addr off --quiet \
    --metadata "server=llama.cpp llama-server (CUDA)" "server_flags=$flags" "gpu=$gpu" \
      "model=random 1.4B Qwen3-shaped GGUF"
done
a=$(ls -d "$out"/ub512/*/ | head -1); b=$(ls -d "$out"/ub2048/*/ | head -1)
for d in "$a" "$b"; do "$B/benchctl" report "$d" --gpu-hour-cost 2.5 > /dev/null; cat "$d/summary.md"; done
gate="p99_ttft:+10% mean_tpot:+5% output_throughput:-5%"
"$B/benchctl" compare "$a" "$b" --fail-on "$gate" | tee "$out/compare.txt" || echo "compare exited $? (the gate)"
"$B/benchctl" compare "$a" "$b" --fail-on "$gate" --format markdown -o "$out/compare.md" || true
"$B/benchctl" compare "$a" "$b" --format html -o "$out/compare.html"
echo "compare: $out/compare.html, $out/compare.md; reports: ${a}report/report.html ${b}report/report.html"
tar czf "$out/compare.tar.gz" -C "$out" ub512 ub2048 compare.txt compare.md compare.html
