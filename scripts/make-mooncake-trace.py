#!/usr/bin/env python3
"""Generates a small Mooncake-format trace (deploy/traces/mooncake-example.jsonl): no download,
the same file on every run (seeded).

Each line: {"timestamp": ms, "input_length": tokens, "output_length": tokens, "hash_ids": [...]}
with one hash id per 512-token block (the last block partial). Requests belong to a few
"applications", each with a system prompt of some blocks shared by all its requests; a third of
the requests continue an earlier request of their application (its blocks, then new ones), as a
chat turn does. Arrivals are Poisson (2 requests/s) over about 30 s.

Usage: make-mooncake-trace.py [OUT] [N] [SEED]
"""
import json
import random
import sys

BLOCK = 512


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "deploy/traces/mooncake-example.jsonl"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    next_id = 0

    def fresh(k: int) -> list:
        nonlocal next_id
        ids = list(range(next_id, next_id + k))
        next_id += k
        return ids

    # four applications, system prompts of 1 to 4 blocks
    apps = [fresh(k) for k in (1, 2, 3, 4)]
    history = {i: [] for i in range(len(apps))}
    t, lines = 0.0, []
    for _ in range(n):
        app = rng.randrange(len(apps))
        if history[app] and rng.random() < 1 / 3:
            base = rng.choice(history[app])  # a later turn: the earlier request's blocks first
        else:
            base = apps[app]
        new_blocks = rng.randint(1, 3)
        last = rng.randint(1, BLOCK)  # tokens of the last, partial block
        ids = base + fresh(new_blocks)
        input_length = (len(ids) - 1) * BLOCK + last
        history[app].append(ids)
        lines.append({
            "timestamp": round(t),
            "input_length": input_length,
            "output_length": rng.randint(16, 128),
            "hash_ids": ids,
        })
        t += rng.expovariate(2.0) * 1000.0
    with open(out, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    print(f"{out}: {n} requests over {t / 1000:.1f} s, {next_id} distinct blocks")


if __name__ == "__main__":
    main()
