"""POST /v1/completions: prompt forms, echo + logprobs scoring, streaming."""

import json

from conftest import MODEL

PROMPT = "The capital of France is"


def test_completion_string_prompt(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.object == "text_completion"
    assert r.id and isinstance(r.created, int)
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.text
    assert c.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 8
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if r.usage.completion_tokens == 8:
        assert c.finish_reason == "length"


def test_completion_list_of_strings(client):
    prompts = ["The capital of France is", "One, two, three,", "Water boils at"]
    r = client.completions.create(model=MODEL, prompt=prompts, max_tokens=4, temperature=0)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    by_index = {c.index: c.text for c in r.choices}
    # Each choice answers its own prompt: same as asking for it alone.
    for i, p in enumerate(prompts):
        alone = client.completions.create(model=MODEL, prompt=p, max_tokens=4, temperature=0)
        assert by_index[i] == alone.choices[0].text, (p, by_index[i], alone.choices[0].text)


def test_completion_token_id_prompt(client, http):
    ids = http.post("/tokenize", json={"content": PROMPT}).json()["tokens"]
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=6, temperature=0)
    by_text = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens


def test_completion_echo_logprobs_scoring(client):
    r = client.completions.create(
        model=MODEL, prompt=PROMPT, echo=True, logprobs=1, max_tokens=0, temperature=0
    )
    c = r.choices[0]
    assert c.text == PROMPT
    lp = c.logprobs
    assert lp is not None
    n = len(lp.tokens)
    assert n == r.usage.prompt_tokens, (lp.tokens, r.usage)
    assert len(lp.token_logprobs) == n and len(lp.top_logprobs) == n and len(lp.text_offset) == n
    assert lp.token_logprobs[0] is None
    assert all(x is not None and x <= 0 for x in lp.token_logprobs[1:]), lp.token_logprobs
    assert "".join(lp.tokens) == PROMPT
    # text_offset: where each token starts in the text.
    assert lp.text_offset[0] == 0
    pos = 0
    for tok, off in zip(lp.tokens, lp.text_offset):
        assert off == pos
        pos += len(tok)
    for top in lp.top_logprobs[1:]:
        assert isinstance(top, dict) and 1 <= len(top) <= 2
        assert all(v <= 0 for v in top.values())
    assert r.usage.completion_tokens == 0


def test_completion_echo_text(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, echo=True, max_tokens=0)
    assert r.choices[0].text == PROMPT
    r = client.completions.create(model=MODEL, prompt=PROMPT, echo=True, max_tokens=4,
                                  temperature=0)
    assert r.choices[0].text.startswith(PROMPT) and len(r.choices[0].text) > len(PROMPT)


def test_completion_logprobs_generated(client):
    r = client.completions.create(model=MODEL, prompt=PROMPT, logprobs=3, max_tokens=4,
                                  temperature=0)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == r.usage.completion_tokens
    assert "".join(lp.tokens) == r.choices[0].text
    assert all(x <= 0 for x in lp.token_logprobs)
    assert all(len(t) == 3 for t in lp.top_logprobs)


def test_completion_streamed(client):
    kw = dict(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0)
    full = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True, **kw))
    assert chunks
    for ch in chunks:
        assert ch.object == "text_completion"
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert text == full.choices[0].text
    assert [ch for ch in chunks if ch.choices][-1].choices[0].finish_reason == \
        full.choices[0].finish_reason


def test_completion_streamed_include_usage(client):
    chunks = list(client.completions.create(
        model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_completion_streamed_raw_sse(http):
    body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, "temperature": 0, "stream": True}
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        raw = r.read().decode()
    events = [e for e in raw.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert events[-1].strip() == "data: [DONE]"
    for e in events[:-1]:
        assert e.startswith("data: "), repr(e)
        assert json.loads(e[len("data: "):])["object"] == "text_completion"


def test_completion_stop(client):
    full = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=12,
                                     temperature=0).choices[0].text
    assert " 6" in full, f"precondition: greedy counting reaches 6: {full!r}"
    r = client.completions.create(model=MODEL, prompt="Count: 1, 2, 3, 4,", max_tokens=12,
                                  temperature=0, stop=" 6")
    assert r.choices[0].text == full[: full.index(" 6")]
    assert r.choices[0].finish_reason == "stop"
