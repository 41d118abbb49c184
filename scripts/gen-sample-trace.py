#!/usr/bin/env python3
"""Writes manifests/datasets/mooncake-sample.jsonl: a small synthetic trace in the Mooncake
format (one JSON object per line: timestamp in ms, input_length, output_length, hash_ids of
512-token blocks). 240 requests over about 30 s: four system prompts (two blocks each) shared
by every request of their family, and conversations whose later requests repeat all blocks of
their earlier ones, so a prefix cache sees the sharing. Seeded: the output never changes."""
import json
import random
from pathlib import Path

BLOCK = 512
rng = random.Random(14)
next_id = 8  # ids 0..7: the four two-block system prompts
conversations = []  # (family, hash_ids so far)
lines = []
t = 0.0
for i in range(240):
    t += rng.expovariate(8.0) * 1000.0  # about 8 requests per second
    if conversations and rng.random() < 0.4:
        k = rng.randrange(len(conversations))
        family, ids = conversations[k]
        ids = ids + [next_id]  # the next turn: the whole history plus one new block
        next_id += 1
        conversations[k] = (family, ids)
    else:
        family = rng.randrange(4)
        ids = [2 * family, 2 * family + 1, next_id]
        next_id += 1
        conversations.append((family, ids))
    # The last block is partly filled.
    input_length = (len(ids) - 1) * BLOCK + rng.randint(16, BLOCK)
    lines.append(json.dumps({
        "timestamp": round(t),
        "input_length": input_length,
        "output_length": rng.randint(16, 160),
        "hash_ids": ids,
    }))
out = Path(__file__).resolve().parent.parent / "manifests" / "datasets" / "mooncake-sample.jsonl"
out.write_text("\n".join(lines) + "\n")
print(f"wrote {len(lines)} records to {out}")
