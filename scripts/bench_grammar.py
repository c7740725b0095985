#!/usr/bin/env python3
"""Generation speed with and without a JSON-schema constraint, per model (issue 11's table).

    python3 scripts/bench_grammar.py [--lume target/release/lume] [--reps 5] [--threads 2]

For each catalogue model, alternates free and constrained `lume run` calls (greedy, same
prompt) and reports generation tokens/s (mean ± std over --reps runs each) from lume's own
stats line, plus the schema's compile time and the token-trie build time. Runs locally only.
"""

import argparse
import json
import re
import statistics
import subprocess

SCHEMA = {
    "type": "object",
    "properties": {
        "fruits": {"type": "array", "items": {"type": "string", "maxLength": 20},
                   "minItems": 20, "maxItems": 20},
    },
    "required": ["fruits"],
    "additionalProperties": False,
}
MODELS = [
    ("smollm2-135m", True),
    ("qwen2.5-coder-0.5b", True),
    ("gemma3-270m", False),
]
GEN = re.compile(r"generation: (\d+) tokens in ([\d.]+) ms, ([\d.]+) tokens/s")
COMPILE = re.compile(r"compiled in ([\d.]+) ms \(([\d.]+) ms with the vocabulary")


def run(lume, model, chat, threads, schema):
    args = [lume, "run", "-m", model, "--temp", "0", "-n", "160", "-t", str(threads)]
    if chat:
        args += ["--chat", "List twenty fruits as JSON."]
    else:
        args += ['A JSON object listing twenty fruits: {"fruits": ["apple",']
    if schema:
        args += ["-j", json.dumps(SCHEMA)]
    p = subprocess.run(args, capture_output=True, text=True, check=True)
    g = GEN.search(p.stderr)
    c = COMPILE.search(p.stderr)
    return int(g.group(1)), float(g.group(3)), (float(c.group(1)), float(c.group(2))) if c else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lume", default="target/release/lume")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=",".join(m for m, _ in MODELS))
    a = ap.parse_args()
    print("| model | free tg t/s | JSON-schema tg t/s | ratio | tokens (free / schema) | compile ms | trie ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for model, chat in [m for m in MODELS if m[0] in a.models.split(",")]:
        free, cons, comp = [], [], []
        nf = nc = 0
        run(a.lume, model, chat, a.threads, False)  # warm-up (page cache)
        for _ in range(a.reps):
            n, tps, _ = run(a.lume, model, chat, a.threads, False)
            free.append(tps); nf = n
            n, tps, c = run(a.lume, model, chat, a.threads, True)
            cons.append(tps); nc = n; comp.append(c)
        mf, sf = statistics.mean(free), statistics.stdev(free)
        mc, sc = statistics.mean(cons), statistics.stdev(cons)
        cm = statistics.mean(c[0] for c in comp)
        tm = statistics.mean(c[1] - c[0] for c in comp)
        print(f"| {model} | {mf:.1f} ± {sf:.1f} | {mc:.1f} ± {sc:.1f} | {mc / mf:.3f} | {nf} / {nc} | {cm:.1f} | {tm:.0f} |")


if __name__ == "__main__":
    main()
