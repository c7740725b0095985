#!/usr/bin/env python3
"""Writes crates/kernels/src/quants/iq_grids.rs from ggml's ggml-common.h.

    python3 scripts/gen_iq_grids.py GGML_COMMON_H > crates/kernels/src/quants/iq_grids.rs

The i-quant grids are facts of the formats: `iq2xxs_grid`, `iq2xs_grid`, `iq2s_grid` and
`iq1s_grid` (uint64_t, 8 values of one byte per point) and `iq3xxs_grid`, `iq3s_grid`
(uint32_t, 4 values per point), each byte one of a few levels (iq1s: int8 -1, 0, 1). Each
point is written as one u16: value j (byte j, least significant first) is stored as the index
of its level in the sorted level list, in bits [BITS*j, BITS*j + BITS), BITS = 2 for up to 4
levels, 3 for up to 8. The level lists are read off the tables themselves and printed next to
each one. The layout (12 codes a line) is what `rustfmt` gives; `rustfmt --check` passes on
the output.

Where the header comes from (llama.cpp's source ships in the llama-cpp-python sdist; none of
it is committed here):

    python3 -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /tmp/lcpp
    tar -xzf /tmp/lcpp/llama_cpp_python-0.3.36.tar.gz -C /tmp/lcpp \\
        llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/src/ggml-common.h
    python3 scripts/gen_iq_grids.py \\
        /tmp/lcpp/llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/src/ggml-common.h \\
        | diff - crates/kernels/src/quants/iq_grids.rs

With that header (llama-cpp-python 0.3.36) the output equals the committed file byte for byte
(checked 2026-12-02: `diff` prints nothing).
"""
import re
import sys

# (table in ggml-common.h, Rust name, format name in the doc line), in the file's order.
TABLES = [
    ("iq2xxs_grid", "IQ2XXS_CODES", "IQ2XXS"),
    ("iq2xs_grid", "IQ2XS_CODES", "IQ2XS"),
    ("iq2s_grid", "IQ2S_CODES", "IQ2S"),
    ("iq3xxs_grid", "IQ3XXS_CODES", "IQ3XXS"),
    ("iq3s_grid", "IQ3S_CODES", "IQ3S"),
    ("iq1s_grid", "IQ1S_CODES", "IQ1S"),
]

HEADER = """\
//! Lattice points of the IQ formats (facts of the format: each grid index names a fixed
//! vector of levels). Stored compactly as one `u16` per point: value `j` of the point is
//! `LEVELS[(code >> (BITS·j)) & MASK]` with the level list given next to each table. The
//! codes were produced by a conversion script from the published table values.
"""

MAX_WIDTH = 100  # rustfmt's default
INDENT = "    "


def read_tables(text):
    """{name: (element type, [values])} of every GGML_TABLE_BEGIN(type, name, size) table."""
    defines = dict(re.findall(r"^#define\s+(\w+)\s+(\d+)\s*$", text, re.M))
    tables = {}
    # Uses start a line (the macro's own #define does not).
    pattern = re.compile(
        r"^GGML_TABLE_BEGIN\(\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\)(.*?)GGML_TABLE_END\(\)",
        re.S | re.M,
    )
    for ty, name, size, body in pattern.findall(text):
        if name in tables:
            continue  # one definition per backend in some headers: the first one is used
        body = re.sub(r"//[^\n]*", "", body)
        values = [int(v, 0) for v in re.findall(r"0x[0-9a-fA-F]+|\b\d+\b", body)]
        n = int(defines.get(size, size))
        if len(values) != n:
            sys.exit(f"{name}: {len(values)} values, declared size {size} = {n}")
        tables[name] = (ty, values)
    return tables


def encode(name, ty, values):
    """(values per point, bits per value, levels, codes) of one grid table."""
    width = {"uint64_t": 8, "uint32_t": 4}[ty]
    signed = name == "iq1s_grid"  # its bytes are int8 levels -1, 0, 1
    points = []
    for v in values:
        point = [(v >> (8 * j)) & 0xFF for j in range(width)]
        if signed:
            point = [b - 256 if b >= 128 else b for b in point]
        points.append(point)
    levels = sorted({b for p in points for b in p})
    bits = 2 if len(levels) <= 4 else 3
    if len(levels) > 8 or bits * width > 16:
        sys.exit(f"{name}: {len(levels)} levels x {width} values do not fit a u16")
    index = {level: i for i, level in enumerate(levels)}
    codes = [sum(index[b] << (bits * j) for j, b in enumerate(p)) for p in points]
    return width, bits, levels, codes


def rust_array(codes):
    """The codes as rustfmt lays out a long array of short literals."""
    lines, line = [], ""
    for item in (f"0x{c:04x}," for c in codes):
        if line and len(INDENT) + len(line) + 1 + len(item) > MAX_WIDTH:
            lines.append(INDENT + line)
            line = item
        else:
            line = f"{line} {item}" if line else item
    lines.append(INDENT + line)
    return "\n".join(lines)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        tables = read_tables(f.read())
    out = [HEADER]
    for c_name, rust_name, label in TABLES:
        ty, values = tables[c_name]
        width, bits, levels, codes = encode(c_name, ty, values)
        out.append(
            f"\n/// {label}: {len(codes)} points of {width} values, {bits} bits per value, "
            f"levels [{', '.join(map(str, levels))}].\n"
            f"pub(super) const {rust_name}: [u16; {len(codes)}] = [\n"
            f"{rust_array(codes)}\n"
            "];\n"
        )
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
