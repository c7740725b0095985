#!/usr/bin/env python3
"""Record the tensor types llama-quantize chooses, for crates/quantize/tests/llama_quantize_types.rs.

Runs a llama-quantize built elsewhere (never by this repository) in --dry-run mode on every
model given, for every file type lume knows, and writes
testdata/quantize/llama_quantize_types.json:

  {"llama_quantize": "<its version line>",
   "models": {KEY: {"tensors": [names in llama.cpp's order],
                    "plans": {FTYPE: {"types": "t0 t1 ...", "fallbacks": N}}}}}

A tensor whose type does not change is recorded with its own type. Usage:

  LD_LIBRARY_PATH=DIR python3 scripts/gen_llama_quantize_types.py DIR/llama-quantize \\
      KEY=PATH.gguf [KEY=PATH.gguf ...]
"""
import json
import re
import subprocess
import sys

FTYPES = ["Q4_0", "Q4_1", "MXFP4_MOE", "Q5_0", "Q5_1", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M",
          "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0", "Q2_K", "Q2_K_S", "IQ3_XXS", "IQ3_S", "IQ3_M",
          "IQ3_XS", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_K_S", "Q4_K_M",
          "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "F16", "BF16", "F32"]

LINE = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[[^\]]*\], type =\s+(\S+), size =.*?(?:\((\S+)\))?$")
FALLBACK = re.compile(r"WARNING: (\d+) of \d+ tensor\(s\) required fallback")


def dry_run(exe, path, ftype):
    out = subprocess.run([exe, "--dry-run", path, ftype], capture_output=True, text=True, errors="replace")
    if out.returncode != 0:
        raise SystemExit(f"{exe} --dry-run {path} {ftype} failed:\n{out.stderr[-2000:]}")
    text = out.stdout + out.stderr
    names, types = [], []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if m:
            names.append(m.group(1))
            types.append((m.group(3) or m.group(2)).upper())
    fb = FALLBACK.search(text)
    version = next((l for l in text.splitlines() if l.startswith("version:")), "")
    return names, types, int(fb.group(1)) if fb else 0, version


def main():
    exe, specs = sys.argv[1], sys.argv[2:]
    result = {"llama_quantize": "", "models": {}}
    for spec in specs:
        key, path = spec.split("=", 1)
        model = {"tensors": None, "plans": {}}
        for ft in FTYPES:
            names, types, fallbacks, version = dry_run(exe, path, ft)
            result["llama_quantize"] = version
            if model["tensors"] is None:
                model["tensors"] = names
            assert names == model["tensors"], (key, ft)
            model["plans"][ft] = {"types": " ".join(types), "fallbacks": fallbacks}
        result["models"][key] = model
        print(f"{key}: {len(model['tensors'])} tensors x {len(FTYPES)} file types", file=sys.stderr)
    with open("testdata/quantize/llama_quantize_types.json", "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
