#!/usr/bin/env python3
"""Cross-check the Rust byte-level BPE tokenizer against an independent Python reference.

The reference follows llama.cpp's steps with real regexes (Python `regex` module):
special tokens cut out longest first (one token at a time over all fragments), the
pre-tokenizer regex chain, and the plain "merge the lowest-rank pair, leftmost first" loop.
Whitespace is spelled out as llama.cpp's set (Python's `\\s` also matches U+001C..U+001F).

Usage (from the workspace root, after `cargo build --release -p tokenizer --example tok`):
    python3 crates/tokenizer/tools/crosscheck.py MODEL_GGUF [N_STRINGS] [SEED]
"""
import json
import random
import struct
import subprocess
import sys
import tempfile

import regex

WS = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
S = f"[{WS}]"
NS = f"[^{WS}]"
GPT2 = rf"'s|'t|'re|'ve|'m|'ll|'d| ?\p{{L}}+| ?\p{{N}}+| ?[^{WS}\p{{L}}\p{{N}}]+|{S}+(?!{NS})|{S}+"


def llama3(digits):
    return (rf"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|{digits}"
            rf"| ?[^{WS}\p{{L}}\p{{N}}]+[\r\n]*|{S}*[\r\n]+|{S}+(?!{NS})|{S}+")


CHAINS = {
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
    "gpt-2": [GPT2],
    "smollm": [r"\p{N}", GPT2],
    "llama-bpe": [llama3(r"\p{N}{1,3}")],
    "qwen2": [llama3(r"\p{N}")],
}


def read_gguf_metadata(path):
    d = open(path, "rb").read(256 * 1024 * 1024)
    pos = 4 + 4
    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, d, pos)[0]
        pos += struct.calcsize(fmt)
        return v
    def string():
        nonlocal pos
        n = take("<Q")
        v = d[pos:pos + n].decode("utf-8")
        pos += n
        return v
    fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et = take("<I")
            return [value(et) for _ in range(take("<Q"))]
        return take(fmts[t])
    take("<Q")
    md = {}
    for _ in range(take("<Q")):
        k = string()
        md[k] = value(take("<I"))
    return md


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


class Reference:
    def __init__(self, md):
        self.spm = md["tokenizer.ggml.model"] == "llama"
        self.scores = md.get("tokenizer.ggml.scores")
        self.add_space_prefix = md.get("tokenizer.ggml.add_space_prefix", True)
        self.tokens = md["tokenizer.ggml.tokens"]
        self.types = md.get("tokenizer.ggml.token_type", [1] * len(self.tokens))
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.ranks = {}
        for i, m in enumerate(md.get("tokenizer.ggml.merges", [])):
            p = m.find(" ", 1)
            self.ranks.setdefault((m[:p], m[p + 1:]), i)
        if not self.spm:
            self.chain = [regex.compile(r) for r in CHAINS[md.get("tokenizer.ggml.pre", "default")]]
        self.b2u = bytes_to_unicode()
        control = {3} | ({2})
        eog = {"<|im_end|>", "<|endoftext|>", "</s>", "<end_of_turn>", "<|eot_id|>", "<|end|>"}
        self.special = []  # (text, needs_parse_special)
        for i, t in enumerate(self.tokens):
            ty = self.types[i]
            if t in eog:
                ty = 3 if ty != 4 else 34
            if ty in (2, 3, 4, 34):
                self.special.append((i, t, ty in (2, 3, 34)))
        self.special.sort(key=lambda x: (-len(x[1].encode()), x[0]))

    def partition(self, text, parse_special):
        frags = [("text", text)]
        for i, t, needs in self.special:
            if needs and not parse_special:
                continue
            out = []
            for kind, v in frags:
                if kind != "text" or t not in v:
                    out.append((kind, v))
                    continue
                parts = v.split(t)
                for k, p in enumerate(parts):
                    if p:
                        out.append(("text", p))
                    if k + 1 < len(parts):
                        out.append(("tok", i))
            frags = out
        return frags

    def split(self, text):
        pieces = [text]
        for rx in self.chain:
            out = []
            for p in pieces:
                pos = 0
                for m in rx.finditer(p):
                    if m.start() > pos:
                        out.append(p[pos:m.start()])
                    out.append(m.group())
                    pos = m.end()
                if pos < len(p):
                    out.append(p[pos:])
            pieces = out
        return pieces

    def bpe(self, word):
        syms = [self.b2u[b] for b in word.encode("utf-8")]
        while len(syms) > 1:
            best = None
            for k in range(len(syms) - 1):
                r = self.ranks.get((syms[k], syms[k + 1]))
                if r is not None and (best is None or r < best[0]):
                    best = (r, k)
            if best is None:
                break
            k = best[1]
            syms[k:k + 2] = [syms[k] + syms[k + 1]]
        return [self.ids[s] for s in syms]

    def spm_merge(self, text):
        """Merge the adjacent pair that forms the highest-scoring token, leftmost on ties."""
        syms = list(text)
        while True:
            best = None
            for k in range(len(syms) - 1):
                t = self.ids.get(syms[k] + syms[k + 1])
                if t is not None and (best is None or self.scores[t] > best[0]):
                    best = (self.scores[t], k)
            if best is None:
                break
            k = best[1]
            syms[k:k + 2] = [syms[k] + syms[k + 1]]
        out = []
        for s in syms:
            if s in self.ids:
                out.append(self.ids[s])
            else:
                out.extend(self.ids["<0x%02X>" % b] for b in s.encode("utf-8"))
        return out

    def encode(self, text, parse_special):
        out = []
        prev_special = True
        for kind, v in self.partition(text, parse_special):
            if kind == "tok":
                out.append(v)
                prev_special = True
            elif self.spm:
                v = ("▁" if self.add_space_prefix and prev_special else "") + v.replace(" ", "▁")
                out.extend(self.spm_merge(v))
                prev_special = False
            else:
                for w in self.split(v):
                    out.extend(self.bpe(w))
        return out


ALPHABET = ["a", "Z", "hello", " world", "'s", "'T", "'re", "'LL", "'x", " ", "  ", "   ", "\t", "\n", "\n\n",
            "\r\n", "\r", "\u00a0", "\u3000", "\u200b", "1", "23", "456", "7890", "٣", "Ⅻ", ".", ",", "!!", "$",
            "+", "`", "~", "(", ")", "é", "ß", "你", "好", "🍕", "👍🏽", "\u200d", "न", "ि", "्", "\u0301",
            "Привет", "<|im_start|>", "<|im_end|>", "<reponame>", "<tool_call>", "</s>", "<", "|", ">", "_",
            "-", "x", "Ω", "ﬁ", "\x00", "\x1c", "\u2028", "\u00b2", "½"]


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    ref = Reference(read_gguf_metadata(path))
    cases = []
    for _ in range(n):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 14)))
        cases.append((text, rng.random() < 0.5))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cases, f)
    got = json.loads(subprocess.check_output(["target/release/examples/tok", path, "--batch", f.name]))
    bad = 0
    for (text, ps), ids in zip(cases, got):
        want = ref.encode(text, ps)
        if want != ids:
            bad += 1
            if bad <= 10:
                print(f"MISMATCH parse_special={ps} {text!r}\n  want {want}\n  got  {ids}")
    print(f"{path}: {n - bad}/{n} agree")


if __name__ == "__main__":
    main()
