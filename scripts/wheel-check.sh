#!/usr/bin/env bash
# The pip wheel, end to end: builds it with maturin (binary bindings, wheel/pyproject.toml),
# installs it into a fresh virtual environment, and runs the README's quick start from that
# environment's bin/ (the binaries on PATH as pip put them there, not cargo's target/).
#
#   scripts/wheel-check.sh [DIST_DIR]      (default: dist/)
#
# WHEEL_COMPAT: maturin's --compatibility (default manylinux2014, cross-linked with zig so the
#   binaries need no newer glibc symbols than CentOS 7's 2.17; `linux` skips the check).
# WHEEL_PROFILE: cargo profile (default release; CI: wheel-check, unoptimised, same packaging).
# WHEEL_TARGET_DIR: cargo's build directory for the release build (default target/wheel); it is
#   deleted afterwards (CI's disk) unless WHEEL_KEEP_TARGET=1.
# Prints the glibc symbol versions the binaries need and the wheel's tags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=$(realpath -m "${1:-dist}")
compat=${WHEEL_COMPAT:-manylinux2014}
profile=${WHEEL_PROFILE:-release}
target=$(realpath -m "${WHEEL_TARGET_DIR:-target/wheel}")
work=$(mktemp -d /tmp/benchctl-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
t0=$(date +%s)

# maturin (and zig, for manylinux2014) in a throwaway environment of their own
python3 -m venv "$work/tools"
tools=("maturin>=1.9,<2")
zig=()
if [ "$compat" = manylinux2014 ]; then
  tools+=(ziglang)
  zig=(--zig)
fi
"$work/tools/bin/pip" install -q --disable-pip-version-check "${tools[@]}"
export PATH="$work/tools/bin:$PATH"

rm -rf "$dist"
mkdir -p "$dist"
CARGO_TARGET_DIR="$target" CARGO_INCREMENTAL=0 maturin build --profile "$profile" --locked \
  -m wheel/Cargo.toml --compatibility "$compat" "${zig[@]}" --out "$dist"
wheel=$(ls "$dist"/benchctl-*.whl)
echo "wheel: $(basename "$wheel") ($(du -h "$wheel" | cut -f1), profile $profile)"
t1=$(date +%s)

# the glibc symbol versions each binary needs (manylinux2014 allows up to GLIBC_2.17)
python3 -m zipfile -e "$wheel" "$work/unpacked"
for b in "$work"/unpacked/*.data/scripts/*; do
  echo "$(basename "$b") needs: $(objdump -T "$b" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)" \
    "(all: $(objdump -T "$b" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tr '\n' ' '))"
done
if [ "${WHEEL_KEEP_TARGET:-0}" != 1 ]; then
  rm -rf "$target"
fi

# a new environment, the wheel installed, everything run from its bin/
venv="$work/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check --no-index "$wheel"
want=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
for b in benchctl benchctl-agent benchctl-loadgen; do
  test -x "$venv/bin/$b" || { echo "FAIL: $b is not in $venv/bin" >&2; exit 1; }
  v=$("$venv/bin/$b" --version)
  echo "$v"
  case "$v" in
    "$b $want") ;;
    *) echo "FAIL: $b --version printed '$v', the workspace version is $want" >&2; exit 1 ;;
  esac
done
# PATH as an activated environment has it: the quick start's `benchctl` is the wheel's
export PATH="$venv/bin:$PATH"
[ "$(command -v benchctl)" = "$venv/bin/benchctl" ]
cd "$work"
benchctl bench --sim --max-concurrency 4 --input-len 64 --output-len 16 --num-prompts 8 \
  --save-result "$work/quick.json"
python3 - "$work/quick.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["completed"] == 8 and r["failed"] == 0, r
print("bench from the wheel: completed", r["completed"], "mean TTFT", round(r["mean_ttft_ms"], 1), "ms")
PY
# the README's quick start, as written there
benchctl bench --sim --max-concurrency 32 --input-len 1024 --output-len 256 --num-prompts 64
benchctl sweep --sim --io 256x128 --concurrency 4,8,16,32 --num-prompts 32 --threshold "ttft:400 tpot:50"
ls bench_logs/*/
cd "$root"
echo "wheel check passed: build $((t1 - t0)) s, all $(( $(date +%s) - t0 )) s"
