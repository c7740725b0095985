#!/usr/bin/env python3
"""sentence-transformers' speed on the texts `lume bench -m minilm-l6` uses (issue 10's
comparison). PyTorch is not part of the test venv: run it with a venv holding
sentence-transformers and torch (CPU), e.g.

    /path/to/venv/bin/python scripts/bench_sentence_transformers.py ~/.cache/lume/models/minilm-l6 \
        --threads 2 --reps 5

Prints sentences/s (mean ± std over --reps timed runs after one warm-up) for batch sizes 1 and
32, a short sentence and a long passage (truncated at the model's 256 tokens), float32.
"""

import argparse
import statistics
import time

SHORT = "The quick brown fox jumps over the lazy dog near the river bank."
LONG = SHORT * 40


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--batch", default="1,32")
    a = ap.parse_args()
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    m = SentenceTransformer(a.model, device="cpu")
    print(f"torch {torch.__version__}, {a.threads} threads, max_seq_length {m.max_seq_length}")
    print("| test | sentences/s |")
    print("| --- | ---: |")
    for label, text in [("short", SHORT), ("long", LONG)]:
        n_tok = len(m.tokenizer(text, truncation=True, max_length=m.max_seq_length)["input_ids"])
        for b in [int(x) for x in a.batch.split(",")]:
            texts = [text] * b
            samples = []
            for rep in range(a.reps + 1):
                t = time.perf_counter()
                m.encode(texts, batch_size=b, convert_to_numpy=True, normalize_embeddings=True)
                s = time.perf_counter() - t
                if rep > 0:
                    samples.append(b / s)
            sd = statistics.stdev(samples) if len(samples) > 1 else 0.0
            print(f"| embed {label} ({n_tok} tokens) x{b} | {statistics.mean(samples):.2f} ± {sd:.2f} |")


if __name__ == "__main__":
    main()
