#!/usr/bin/env python3
"""Cross-check lume's CLIP tokenizer against Hugging Face's CLIPTokenizerFast on random texts.

Texts mix ASCII words, digits, punctuation runs, contractions, accented letters (precomposed
and combining), CJK, emoji, format characters, odd whitespace and the special-token texts.

Usage (from the workspace root; needs `transformers` and `tokenizers`, e.g. 4.57.6 / 0.22.2):
    cargo build --release -p tokenizer --example clip_tok
    python3 crates/tokenizer/tools/crosscheck_clip.py TOKENIZER_DIR [N_STRINGS] [SEED]
Prints the first differences and a count; exits 1 if any.
"""
import json
import random
import subprocess
import sys

from transformers import CLIPTokenizerFast

PIECES = [
    "a", "photo", "of", "cat", "Dog", "HELLO", "masterpiece", "ultra-detailed", "8k", "1girl",
    "don't", "it's", "we'd've", "you're", "I'll", "'s", "''", "'x", "3.14", "1,000", "42",
    "!!!", "??", "...", "(", ")", "[", "]", "{", "}", ":", ";", "/", "\\", "_", "-", "~", "*",
    "&amp;", "<", ">", "|", "#", "@", "$", "%", "^", "=", "+", "`", "\"",
    "café", "cafe\u0301", "naïve", "über", "straße", "ẞ", "Ångström", "ĳ", "µ", "ﬁ", "Σ", "ς",
    "İ", "ǅ", "一只", "可爱的猫", "東京", "ネオン", "한국어", "ไทย", "العربية", "हिन्दी",
    "🐱", "🔥🔥", "👍🏽", "❤️", "👨‍👩‍👧", "\u200b", "\u200d", "\u00ad", "\ufeff",
    " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\u0085", "\x0b", "\x1c",
    "<|startoftext|>", "<|endoftext|>", "<|endoftext", "<|", "|>", "</w>", "Ⅻ", "٣", "²", "½",
]


def random_text(rng):
    n = rng.randint(0, 12)
    out = []
    for _ in range(n):
        out.append(rng.choice(PIECES))
        if rng.random() < 0.6:
            out.append(rng.choice([" ", "", "  ", ",", ", "]))
    return "".join(out)


def main():
    tok_dir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    rng = random.Random(seed)
    texts = [random_text(rng) for _ in range(n)]
    ref = CLIPTokenizerFast.from_pretrained(tok_dir)
    want = [ref(t)["input_ids"] for t in texts]
    got = json.loads(
        subprocess.run(
            ["target/release/examples/clip_tok", tok_dir],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    bad = [(t, w, g) for t, w, g in zip(texts, want, got) if w != g]
    for t, w, g in bad[:10]:
        print(f"{t!r}\n  want {w}\n  got  {g}")
    print(f"{n - len(bad)} of {n} texts agree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
