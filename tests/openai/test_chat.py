"""POST /v1/chat/completions: response shape, streaming, multi-turn, prefix reuse."""

import concurrent.futures as cf
import json

from conftest import MODEL

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]


def test_chat_non_streamed_shape(client):
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16)
    assert r.object == "chat.completion"
    assert r.id
    assert isinstance(r.created, int) and r.created > 1_600_000_000
    assert r.system_fingerprint
    assert r.model
    assert len(r.choices) == 1
    c = r.choices[0]
    assert c.index == 0
    assert c.message.role == "assistant"
    assert c.message.content, "empty content"
    assert c.finish_reason in ("stop", "length")
    u = r.usage
    assert u.prompt_tokens > 0
    assert 0 < u.completion_tokens <= 16
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert u.prompt_tokens_details is not None, "usage.prompt_tokens_details missing"
    cached = u.prompt_tokens_details.cached_tokens
    assert isinstance(cached, int) and 0 <= cached <= u.prompt_tokens


def test_chat_finish_reason_length(client):
    r = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=8, temperature=0)
    c = r.choices[0]
    assert r.usage.completion_tokens <= 8
    if r.usage.completion_tokens == 8:
        assert c.finish_reason == "length"
    # A request for a long story cannot end within 8 tokens.
    assert r.usage.completion_tokens == 8, r
    assert c.finish_reason == "length"


def test_chat_usage_prompt_tokens_matches_template(client, http):
    # usage.prompt_tokens counts the rendered chat prompt.
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=1, temperature=0)
    prompt = http.post("/apply-template", json={"messages": QUESTION}).json()["prompt"]
    assert "What is the capital of France?" in prompt
    assert r.usage.prompt_tokens > len(
        http.post("/tokenize", json={"content": "What is the capital of France?"}).json()["tokens"]
    )


def _stream_text(client, **kw):
    chunks = list(client.chat.completions.create(stream=True, **kw))
    return chunks, "".join(
        (ch.choices[0].delta.content or "") for ch in chunks if ch.choices
    )


def test_chat_stream_matches_non_streamed(client):
    kw = dict(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0)
    full = client.chat.completions.create(**kw)
    chunks, text = _stream_text(client, **kw)
    assert chunks, "no chunks"
    for ch in chunks:
        assert ch.object == "chat.completion.chunk"
        assert ch.id
    ids = {ch.id for ch in chunks}
    assert len(ids) == 1, f"chunk ids differ: {ids}"
    choice_chunks = [ch for ch in chunks if ch.choices]
    assert choice_chunks[0].choices[0].delta.role == "assistant"
    assert choice_chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    for ch in choice_chunks[:-1]:
        assert ch.choices[0].finish_reason is None
    assert text == full.choices[0].message.content


def test_chat_stream_include_usage(client):
    chunks, text = _stream_text(
        client, model=MODEL, messages=QUESTION, max_tokens=8, temperature=0,
        stream_options={"include_usage": True},
    )
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    # Only the final chunk carries usage.
    for ch in chunks[:-1]:
        assert ch.usage is None, ch
    assert text


def test_chat_stream_raw_sse(http):
    body = {"model": MODEL, "messages": QUESTION, "max_tokens": 8, "temperature": 0,
            "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        raw = r.read().decode()
    events = [e for e in raw.replace("\r\n", "\n").split("\n\n") if e.strip()]
    assert events[-1].strip() == "data: [DONE]", events[-3:]
    assert raw.rstrip().endswith("data: [DONE]")
    text = ""
    for e in events[:-1]:
        lines = [ln for ln in e.split("\n") if ln and not ln.startswith(":")]
        assert len(lines) == 1 and lines[0].startswith("data: "), repr(e)
        obj = json.loads(lines[0][len("data: "):])
        assert obj["object"] == "chat.completion.chunk"
        for ch in obj["choices"]:
            text += ch["delta"].get("content") or ""
    assert text


def test_chat_multi_turn(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
            {"role": "user", "content": "And of Germany?"},
        ],
        max_tokens=12,
        temperature=0,
    )
    assert r.choices[0].message.content
    assert r.choices[0].message.role == "assistant"


def test_chat_content_parts_accepted(client):
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Say hello."}]}],
        max_tokens=4,
        temperature=0,
    )
    assert r.choices[0].message.content


def _conversation_twice(client, cities):
    first = [
        {"role": "system", "content": "You are a geography tutor who answers in one sentence."},
        {"role": "user", "content": f"Which river flows through {cities}?"},
    ]
    r1 = client.chat.completions.create(model=MODEL, messages=first, max_tokens=12, temperature=0)
    reply = r1.choices[0].message.content
    second = first + [
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Into which sea does it flow?"},
    ]
    r2 = client.chat.completions.create(model=MODEL, messages=second, max_tokens=8, temperature=0)
    return r1, r2


def test_chat_prefix_reuse(client, http):
    r1, r2 = _conversation_twice(client, "Vienna, Budapest and Belgrade")
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert cached > 0, f"no prefix reuse: {r2.usage}"
    assert cached < r2.usage.prompt_tokens


def test_chat_prefix_reuse_covers_shared_prefix(client, http):
    # The whole first prompt (system + user + generation prompt) is a prefix of the second
    # request's prompt, so (ideally) all of it comes from the cache; one token of slack for
    # servers that re-evaluate the last shared token to get fresh logits.
    r1, r2 = _conversation_twice(client, "Paris, Lyon and Marseille")
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert cached >= r1.usage.prompt_tokens - 1, (
        f"cached {cached}, first prompt {r1.usage.prompt_tokens} tokens, second {r2.usage}"
    )


def test_chat_parallel_requests(client):
    prompts = ["Name a colour.", "Name a fruit.", "Name an animal.", "Name a country."]

    def one(p):
        return client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=8, temperature=0
        )

    with cf.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, prompts))
    for r in results:
        assert r.choices[0].message.content
        assert r.usage.completion_tokens > 0
    # Greedy answers do not depend on what else ran at the same time (slack for f32 rounding in
    # batched kernels: the first characters at least agree; a mix-up between slots would not).
    for p, r in zip(prompts, results):
        alone = one(p).choices[0].message.content
        assert alone[:4] == r.choices[0].message.content[:4], (p, alone, r.choices[0].message)
