#!/usr/bin/env python3
"""Checks a file written by `lume encode-prompt` with the `safetensors` Python package.

    python3 scripts/check_prompt_safetensors.py FILE NAME=DTYPE:SHAPE...

e.g. `text_encoder.last_hidden_state=float32:2x77x64 text_encoder.input_ids=int64:2x77`.
The file must hold exactly the named tensors, each with that numpy dtype and shape and only
finite values, and its metadata must say `format` = `lume-prompt-embeds`. Prints one line per
tensor and `ok`, or what differs, exiting 1. Needs `safetensors` and `numpy` (both pinned in
tests/openai/requirements.txt, the venv CI uses; crates/cli/tests/encode_prompt.rs runs this).
"""
import json
import sys

import numpy as np
from safetensors import safe_open


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = argv[0]
    want = {}
    for spec in argv[1:]:
        name, _, ty = spec.partition("=")
        dtype, _, shape = ty.partition(":")
        want[name] = (dtype, tuple(int(x) for x in shape.split("x")))
    problems = []
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != "lume-prompt-embeds":
            problems.append(f"metadata format is {meta.get('format')!r}")
        json.loads(meta.get("prompts", "null"))
        names = set(f.keys())
        for missing in sorted(set(want) - names):
            problems.append(f"{missing}: missing")
        for extra in sorted(names - set(want)):
            problems.append(f"{extra}: not expected")
        for name in sorted(names & set(want)):
            t = f.get_tensor(name)
            dtype, shape = want[name]
            print(f"{name:40} {t.dtype} {list(t.shape)}")
            if str(t.dtype) != dtype or tuple(t.shape) != shape:
                problems.append(f"{name}: {t.dtype} {tuple(t.shape)}, expected {dtype} {shape}")
            if t.dtype.kind == "f" and not np.isfinite(t).all():
                problems.append(f"{name}: not all values are finite")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    if problems:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
