#!/bin/bash
# On the GPU machine, after the kit's start-llama.sh has built llama-server and the model
# (/tmp/llama/build/bin/llama-server, /tmp/model.gguf): (re)starts llama-server on PORT with the
# given flags and waits until it answers. The flags are recorded in /tmp/llama-server.flags.
# Usage: llama-serve.sh PORT [llama-server flags...]
set -e
port=${1:?usage: llama-serve.sh PORT [FLAGS...]}; shift
if [ -f /tmp/llama-server.pid ] && kill -0 "$(cat /tmp/llama-server.pid)" 2>/dev/null; then
  kill "$(cat /tmp/llama-server.pid)"
  while kill -0 "$(cat /tmp/llama-server.pid)" 2>/dev/null; do sleep 0.2; done
fi
echo "$*" > /tmp/llama-server.flags
setsid /tmp/llama/build/bin/llama-server -m /tmp/model.gguf -ngl 999 --metrics --host 127.0.0.1 \
  --port "$port" --alias /tmp/model "$@" > /tmp/llama-server.log 2>&1 < /dev/null &
echo $! > /tmp/llama-server.pid
for i in $(seq 1 120); do
  curl -sf "localhost:$port/health" > /dev/null && { echo "llama-server up on :$port with: $*"; exit 0; }
  sleep 0.5
done
echo "llama-server did not come up with: $*"; tail -20 /tmp/llama-server.log; exit 1
