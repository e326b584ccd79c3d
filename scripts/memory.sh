#!/bin/bash
# The load generator's memory (issue 15): client RSS with 1k, 10k and 50k streams held at once,
# and over long outputs (100k tokens per request, every record kept) with and without
# --max-memory. Runs the client benchmark's executable (`-- streams`, `-- long`), which
# re-executes itself as the simulator: no GPU, no Rust toolchain, a few CPUs are enough.
#
# Build the executable with a release profile (never on the shared 2-core VM):
#   exe=$(cargo bench -p benchctl-tests --bench client --no-run --message-format=json \
#     | python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable") and j["target"]["name"] == "client"][0])')
#   mkdir -p KIT/bin && cp "$exe" KIT/bin/benchctl-client-bench    (or gzip -c … > ….gz)
# Usage: memory.sh KIT OUT        (KIT/bin/benchctl-client-bench, gzipped or not)
#        BENCH=path memory.sh - OUT   (any build of the executable, e.g. a debug one)
# Settings (environment): STREAMS="1000 10000 50000"; LONG_REQUESTS=40 LONG_TOKENS=100000
#   LONG_CONCURRENCY=4 LONG_BUDGETS="off 16MiB"; PER_PROCESS (streams per client process; by
#   default what the open-files limit and the ephemeral port range allow).
#
# Limits. N streams need N open files in the client process (and N in the simulator's, its own
# process) and N ephemeral ports towards the simulator's port. As root the script raises the
# open-files limit to 200,000 and the port range to 1024-65535. A user who cannot (a hard limit
# of 20,000 on the GPU machine) gets the streams split over several client processes, each
# with its own simulator and under its limits, run at the same time; their RSS growths are
# summed (each process's growth over its own baseline), and the table says how many processes.
set -u
kit=${1:?usage: memory.sh KIT OUT}; out=${2:?OUT}
if [ -n "${BENCH:-}" ]; then
  bench=$BENCH
else
  B=$kit/bin
  for z in "$B"/benchctl-client-bench.gz; do
    [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }
  done
  bench=$B/benchctl-client-bench
fi
[ -x "$bench" ] || { echo "memory.sh: no executable at $bench" >&2; exit 2; }
mkdir -p "$out"
exec > >(tee -a "$out/console-memory.txt") 2>&1
STREAMS=${STREAMS:-1000 10000 50000}
LONG_REQUESTS=${LONG_REQUESTS:-40}; LONG_TOKENS=${LONG_TOKENS:-100000}
LONG_CONCURRENCY=${LONG_CONCURRENCY:-4}; LONG_BUDGETS=${LONG_BUDGETS:-off 16MiB}

lscpu | grep -E '^(Model name|CPU\(s\))' || true
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nofile=$(ulimit -n)
sysctl -w net.ipv4.ip_local_port_range="1024 65535" >/dev/null 2>&1 ||
  echo "cannot widen the ephemeral port range (not root): streams are split to fit it"
read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
ports=$((hi - lo + 1))
# room for the process's other files and the ports other connections hold
per=$(( (nofile < ports ? nofile : ports) - 1000 ))
[ -n "${PER_PROCESS:-}" ] && per=$PER_PROCESS
echo "open files: $nofile; ephemeral ports: $ports; streams per client process: $per"

# field NAME of a memory-result line
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }

table=$out/memory.md
{
  echo "# benchctl client memory ($(nproc) CPUs, $(date -u +%F), scripts/memory.sh)"
  echo
  echo "## Streams held at once (60 chunks recorded each)"
  echo
  echo "| streams | client processes | held (sum of each process's peak) | failed | client RSS growth MB (sum) | KB per stream |"
  echo "|---:|---:|---:|---:|---:|---:|"
} > "$table"
for n in $STREAMS; do
  k=$(( (n + per - 1) / per )); share=$(( (n + k - 1) / k ))
  echo "== $(date +%T) $n streams: $k process(es) of $share"
  logs=(); pids=()
  for i in $(seq 1 "$k"); do
    log=$out/streams-$n-$i.txt; logs+=("$log")
    timeout 300 "$bench" streams --held "$share" > "$log" 2>&1 &
    pids+=($!)
  done
  # these pids only: a bare `wait` would also wait for the tee above
  wait "${pids[@]}"
  held=0; failed=0; growth=0; ok=1
  for log in "${logs[@]}"; do
    cat "$log"
    line=$(grep '^memory-result case=streams' "$log" | tail -1)
    if [ -z "$line" ]; then ok=0; continue; fi
    held=$((held + $(field held "$line")))
    failed=$((failed + $(field failed "$line")))
    growth=$((growth + $(field rss_peak "$line") - $(field rss_before "$line")))
  done
  [ $ok = 1 ] || echo "streams $n: a client process gave no result (see $out/streams-$n-*.txt)"
  awk -v n="$n" -v k="$k" -v h="$held" -v f="$failed" -v g="$growth" -v ok="$ok" 'BEGIN {
    printf "| %d | %d | %d | %d | %.0f | %.1f |%s\n", n, k, h, f, g / 1e6, g / 1e3 / n, ok ? "" : " (incomplete)" }' >> "$table"
done

{
  echo
  echo "## Long outputs, every record kept ($LONG_REQUESTS requests × $LONG_TOKENS tokens, $LONG_CONCURRENCY at a time)"
  echo
  echo "| --max-memory | chunks recorded | failed | client RSS growth MB | bytes per recorded chunk | records in memory at most MB | spilled MB |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
} >> "$table"
for m in $LONG_BUDGETS; do
  echo "== $(date +%T) long outputs, --max-memory $m"
  log=$out/long-$m.txt
  timeout 600 "$bench" long --long-requests "$LONG_REQUESTS" --long-tokens "$LONG_TOKENS" \
    --long-concurrency "$LONG_CONCURRENCY" --max-memory "$m" > "$log" 2>&1
  cat "$log"
  line=$(grep '^memory-result case=long' "$log" | tail -1)
  if [ -z "$line" ]; then
    echo "| $m | – | – | – | – | – | – (no result: see $log) |" >> "$table"
    continue
  fi
  awk -v m="$m" -v c="$(field chunks "$line")" -v f="$(field failed "$line")" \
    -v b="$(field rss_before "$line")" -v p="$(field rss_peak "$line")" \
    -v r="$(field records_bytes_peak "$line")" -v s="$(field records_spilled_bytes "$line")" 'BEGIN {
    printf "| %s | %d | %d | %.0f | %.1f | %.1f | %.1f |\n", m, c, f, (p - b) / 1e6, (p - b) / (c > 0 ? c : 1), r / 1e6, s / 1e6 }' >> "$table"
done
echo "== $(date +%T) done"
cat "$table"
