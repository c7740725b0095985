#!/usr/bin/env python3
"""Writes testdata/templates/expected.json: what Hugging Face transformers renders for every
template of testdata/templates/*.jinja and every conversation of conversations.json, with
add_generation_prompt true and false (or the error it raises).

The Rust test crates/engine/tests/template_parity.rs renders the same inputs with lume and compares
byte for byte. Run this only when a template, a conversation or the pinned versions change; CI does
not run it (the expectations are committed).

Pinned reference (no PyTorch needed): transformers 5.24.0 with jinja2 3.1.6. Set up with

    python3 -m venv target/tmpl-venv
    target/tmpl-venv/bin/pip install --no-deps -r scripts/gen_template_refs.requirements.txt
    target/tmpl-venv/bin/python scripts/gen_template_refs.py

requirements: transformers==5.24.0 jinja2==3.1.6 (and the small packages its import of
transformers.utils.chat_template_utils needs, pinned in gen_template_refs.requirements.txt).

Rendering follows `PreTrainedTokenizerBase.apply_chat_template(tokenize=False)`: keys whose value
is None are dropped from every message (`_normalize_chat_messages`), the template variables are
the special tokens (here bos_token/eos_token from tokens.json) overridden by the conversation's
kwargs, and `render_jinja_template` does the rest. `strftime_now` sees the fixed time FIXED_NOW
(lume's test passes the same time to its renderer).
"""

import datetime as _dt
import json
import pathlib
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIR = ROOT / "testdata" / "templates"
FIXED_NOW = _dt.datetime(2026, 1, 15, 10, 30, 0)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


def main() -> int:
    # strftime_now reads the module's `datetime`; templates compiled after this see the fixed time.
    ctu.datetime = _FixedDatetime
    ctu._compile_jinja_template.cache_clear()

    convs = json.loads((DIR / "conversations.json").read_text(encoding="utf-8"))
    tokens = json.loads((DIR / "tokens.json").read_text(encoding="utf-8"))["templates"]
    names = sorted(p.stem for p in DIR.glob("*.jinja"))
    missing = [n for n in names if n not in tokens]
    if missing:
        print(f"tokens.json lacks {missing}", file=sys.stderr)
        return 1

    results = {}
    counts = {"ok": 0, "error": 0}
    for name in names:
        source = (DIR / f"{name}.jinja").read_text(encoding="utf-8")
        tok = tokens[name]
        per = {}
        for conv in convs["conversations"]:
            for agp in (True, False):
                key = f"{conv['name']}/{'gen' if agp else 'nogen'}"
                messages = ctu._normalize_chat_messages(conv["messages"])
                kwargs = {"bos_token": tok["bos_token"], "eos_token": tok["eos_token"]}
                kwargs.update(conv.get("kwargs", {}))
                tools = convs["tools"] if conv.get("tools") else None
                try:
                    rendered, _ = ctu.render_jinja_template(
                        conversations=[messages],
                        tools=tools,
                        documents=None,
                        chat_template=source,
                        add_generation_prompt=agp,
                        **kwargs,
                    )
                    per[key] = {"text": rendered[0]}
                    counts["ok"] += 1
                except Exception as e:  # the template refuses this conversation
                    per[key] = {
                        "error": str(e),
                        "kind": type(e).__name__,
                        # raise_exception raises the base TemplateError; Jinja's own errors are
                        # subclasses (UndefinedError, SecurityError, ...) or Python errors.
                        "raised": type(e) is jinja2.exceptions.TemplateError,
                    }
                    counts["error"] += 1
        results[name] = per

    doc = {
        "note": "Made by scripts/gen_template_refs.py; do not edit by hand.",
        "transformers": transformers.__version__,
        "jinja2": jinja2.__version__,
        "fixed_now": FIXED_NOW.isoformat(),
        "results": results,
    }
    out = DIR / "expected.json"
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{out.relative_to(ROOT)}: {len(names)} templates, {counts['ok']} rendered, "
          f"{counts['error']} refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
