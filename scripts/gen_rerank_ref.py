#!/usr/bin/env python3
"""Generates testdata/encoders/rerank/: a tiny random-weight BertForSequenceClassification
(num_labels=1, a cross-encoder reranker), its WordPiece tokenizer, and expected.json with the
pair encodings and logits of a few (query, document) pairs, plus the f32-vs-f64 noise and the
errors that some deliberate bugs cause (they set the tolerance in the README).

Run with the versions of gen_rerank_ref.requirements.txt:
    python scripts/gen_rerank_ref.py [OUT_DIR]
"""
import json
import os
import sys

import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "testdata", "encoders", "rerank")
MAX_LEN = 48

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = """the a an of to in is on for and with what how does do where why who which
it this that are be was can from by at as or not you your we our they
cat cats dog dogs fish bird animal animals pet pets eat eats food sleep sleeps
city cities paris france london capital country river bridge tower museum
rust code program compiler memory safe safety fast speed language languages
model models search rank ranking query document documents score engine
weather rain sun cold hot today tomorrow week
cafe coffee tea drink water bread cheese wine
run running runs jump play game music song
one two three big small good bad new old
""".split()
PIECES = "##s ##ing ##ed ##er ##est ##ly ##e ##a ##o ##i ##n ##t ##r ##l".split()
PUNCT = list(".,!?;:'\"()-")
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
SUBLETTERS = ["##" + c for c in LETTERS]

PAIRS = [
    ("what is the capital of france?", "paris is the capital of france."),
    ("what is the capital of france?", "cats sleep in the sun."),
    ("how do cats eat?", "a cat eats fish, and dogs eat bread!"),
    ("Où est le café?", "The café in Paris serves coffee & tea (très bon)."),
    ("rust", "Rust is a fast, memory-safe language; its compiler checks the code."),
    ("weather", "rain"),
    # Longer than MAX_LEN together: only the document is cut (longest_first, case 2).
    ("which model ranks documents?",
     " ".join(["the search engine ranks each document by its score"] * 8)),
    # Both long: both are cut (longest_first, case 3).
    (" ".join(["what does the query model do with one big document"] * 4),
     " ".join(["the ranking model reads the query and the document together"] * 5)),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    vocab = SPECIAL + PUNCT + LETTERS + SUBLETTERS + WORDS + PIECES
    seen = set()
    vocab = [v for v in vocab if not (v in seen or seen.add(v))]
    vocab_path = os.path.join(OUT, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=vocab_path, do_lower_case=True,
                            model_max_length=MAX_LEN)
    tok.save_pretrained(OUT)

    torch.manual_seed(20261202)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=128, type_vocab_size=2, num_labels=1,
                     hidden_act="gelu", layer_norm_eps=1e-12)
    model = BertForSequenceClassification(cfg).eval()
    # Random init has tiny std (0.02); widen it so every part moves the logit visibly.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            else:
                p.normal_(0.0, 0.15)
    model.save_pretrained(OUT, safe_serialization=True)

    enc = tok([q for q, _ in PAIRS], [d for _, d in PAIRS], truncation="longest_first",
              max_length=MAX_LEN, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits32 = model(**enc).logits[:, 0]
        m64 = BertForSequenceClassification.from_pretrained(OUT).eval().double()
        logits64 = m64(**enc).logits[:, 0]
    noise = (logits32.double() - logits64).abs().max().item()

    # Errors some bugs cause (each on the f64 model, against the f64 logits).
    bugs = {}
    with torch.no_grad():
        e2 = {k: v.clone() for k, v in enc.items()}
        e2["token_type_ids"] = torch.zeros_like(e2["token_type_ids"])
        bugs["token types ignored (all 0)"] = m64(**e2).logits[:, 0]
        for mod in m64.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-5
        bugs["LayerNorm eps 1e-5 instead of 1e-12"] = m64(**enc).logits[:, 0]
        for mod in m64.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-12
        act = m64.bert.pooler.activation
        m64.bert.pooler.activation = torch.nn.Identity()
        bugs["pooler tanh missing"] = m64(**enc).logits[:, 0]
        m64.bert.pooler.activation = act
        out = m64.bert(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).double()
        mean = (out * mask).sum(1) / mask.sum(1)
        pooled = torch.tanh(m64.bert.pooler.dense(mean))
        bugs["mean pooling instead of [CLS]"] = m64.classifier(pooled)[:, 0]
        pooled = m64.bert.pooler(out)
        bugs["classifier bias missing"] = pooled @ m64.classifier.weight[0]
        e3 = {k: v.clone() for k, v in enc.items()}
        e3["attention_mask"] = torch.ones_like(e3["attention_mask"])
        bugs["padding attended (mask ignored)"] = m64(**e3).logits[:, 0]
    bug_err = {k: (v - logits64).abs().max().item() for k, v in bugs.items()}

    cases = []
    for i, (q, d) in enumerate(PAIRS):
        n = int(enc["attention_mask"][i].sum())
        cases.append({
            "query": q,
            "document": d,
            "input_ids": enc["input_ids"][i, :n].tolist(),
            "token_type_ids": enc["token_type_ids"][i, :n].tolist(),
            "logit": float(logits32[i]),
            "logit_f64": float(logits64[i]),
        })
    meta = {
        "generator": "scripts/gen_rerank_ref.py",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "max_length": MAX_LEN,
        "truncation": "longest_first",
        "f32_vs_f64_max_abs": noise,
        "bug_max_abs": bug_err,
        "cases": cases,
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(json.dumps({k: meta[k] for k in ("f32_vs_f64_max_abs", "bug_max_abs")}, indent=1))
    print([round(c["logit"], 5) for c in cases], [len(c["input_ids"]) for c in cases])


if __name__ == "__main__":
    main()
