"""Non-OpenAI routes: /tokenize, /detokenize, /apply-template, /props, /slots, /metrics."""

import re

from conftest import CTX_SIZE, MODEL, N_PARALLEL


def test_tokenize_detokenize_round_trip(http):
    r = http.post("/tokenize", json={"content": "Hello world"})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens), tokens
    r = http.post("/detokenize", json={"tokens": tokens})
    assert r.status_code == 200, r.text
    assert r.json()["content"] == "Hello world"


def test_tokenize_matches_cli_ids(http):
    # `lume tokenize "Hello world"` gives [19556, 905] for smollm2 (no BOS).
    assert http.post("/tokenize", json={"content": "Hello world"}).json()["tokens"] == [19556, 905]


def test_detokenize_unicode(http):
    text = "Grüße, 世界! 🙂"
    tokens = http.post("/tokenize", json={"content": text}).json()["tokens"]
    assert http.post("/detokenize", json={"tokens": tokens}).json()["content"] == text


def test_apply_template(http):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    r = http.post("/apply-template", json={"messages": msgs})
    assert r.status_code == 200, r.text
    prompt = r.json()["prompt"]
    assert "<|im_start|>" in prompt
    assert "<|im_start|>system\nBe brief.<|im_end|>" in prompt
    assert "<|im_start|>user\nHello there<|im_end|>" in prompt
    assert prompt.rstrip().endswith("<|im_start|>assistant"), repr(prompt)


def test_props(http):
    r = http.get("/props")
    assert r.status_code == 200, r.text
    p = r.json()
    for key in ("model", "n_ctx", "total_slots", "chat_template", "default_generation_settings",
                "build_info"):
        assert key in p, f"/props lacks {key!r}: {sorted(p)}"
    assert p["total_slots"] == N_PARALLEL
    assert isinstance(p["n_ctx"], int) and 0 < p["n_ctx"] <= CTX_SIZE * N_PARALLEL
    assert "<|im_start|>" in p["chat_template"]
    assert isinstance(p["default_generation_settings"], dict)
    assert p["build_info"]
    assert MODEL in str(p["model"]) or "smollm2" in str(p["model"]).lower(), p["model"]


def test_slots(http):
    r = http.get("/slots")
    assert r.status_code == 200, r.text
    slots = r.json()
    assert isinstance(slots, list) and len(slots) == N_PARALLEL, slots
    assert all(isinstance(s, dict) for s in slots)


def _metric(text, name):
    """Sum of the samples of `name` (without labels or with any)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m:
            total += float(m.group(2))
            seen = True
    return total if seen else None


def test_metrics_without_key(client, anon):
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=2)
    r = anon.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    text = r.text
    for name in (
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "vllm:num_requests_running",
        "vllm:time_to_first_token_seconds_bucket",
    ):
        assert _metric(text, name) is not None, f"/metrics lacks {name}:\n{text[:3000]}"
    assert _metric(text, "llamacpp:prompt_tokens_total") > 0
    assert _metric(text, "llamacpp:tokens_predicted_total") > 0
    assert "# TYPE" in text
    assert 'le="+Inf"' in text


def test_metrics_counters_grow(client, anon):
    before = _metric(anon.get("/metrics").text, "llamacpp:tokens_predicted_total")
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=4,
                                  temperature=0)
    after = _metric(anon.get("/metrics").text, "llamacpp:tokens_predicted_total")
    assert after - before >= r.usage.completion_tokens
