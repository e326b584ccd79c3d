#!/bin/bash
# On the GPU machine (16 CPUs; no GPU and no Rust toolchain needed): the load generator's
# multi-core scaling and its memory per stream (issue 15), with the client benchmark's release
# executable, which re-executes itself as the simulator (self-contained).
# Build it here and carry it gzipped (the travelling tree is limited to 64 MiB):
#   exe=$(cargo bench -p benchctl-tests --bench client --no-run --message-format=json \
#     | python3 -c 'import json,sys; print([j["executable"] for j in map(json.loads, sys.stdin) if j.get("executable") and j["target"]["name"] == "client"][0])')
#   gzip -c "$exe" > .device-kit/bin/benchctl-client-bench.gz
# Usage: scaling-gpu.sh KIT OUT   (KIT/bin holds benchctl-client-bench, gzipped or not). About 3 minutes.
#   1. scaling: simulators on CPUs 0-7 (one per client core), the client on 1, 2, 4, 8 of CPUs 8-15
#   2. memory: client RSS per stream with 1k, 10k and 50k streams held at once
#   3. big bodies: MB request bodies, chunks across 64 KB, thousands of events per write,
#      a 100k-token output (client RSS growth per recorded chunk)
set -eu
kit=${1:?usage: scaling-gpu.sh KIT OUT}; out=${2:?OUT}
B=$kit/bin
for z in "$B"/benchctl-client-bench.gz; do [ -e "$z" ] && { gunzip -c "$z" > "${z%.gz}"; chmod +x "${z%.gz}"; rm "$z"; }; done
mkdir -p "$out"
exec > >(tee -a "$out/console-scaling.txt") 2>&1
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|NUMA node)' || true
# 50k streams: 50k open files in the client process (and in the simulator's), and 50k ephemeral
# ports towards one server port (Linux's default range has 28k)
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files: $(ulimit -n)"
sysctl -w net.ipv4.ip_local_port_range="1024 65535" 2>/dev/null ||
  echo "cannot widen the ephemeral port range: 50k streams may fail to connect"
bench=$B/benchctl-client-bench
echo "== $(date +%T) scaling"
timeout 150 "$bench" scaling --sim-cpus 0-7 --client-cpus 8-15 --cores 1,2,4,8 \
  --streams 256 --step-ms 1 --secs 2 | tee "$out/scaling.md" || echo "scaling: exit $?"
echo "== $(date +%T) memory per stream"
timeout 90 "$bench" streams --held 1000,10000,50000 | tee "$out/memory.md" || echo "memory: exit $?"
echo "== $(date +%T) big bodies"
timeout 60 "$bench" big quick | tee "$out/big.md" || echo "big: exit $?"
echo "== $(date +%T) done"
