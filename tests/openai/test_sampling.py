"""Sampling parameters on /v1/chat/completions: seed, stop, max_tokens, logprobs, n, logit_bias."""

import openai
import pytest

from conftest import MODEL

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
FRANCE = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


def test_seed_reproducible(client):
    # The same seeded request twice gives the same text, whether or not the second one finds
    # the prompt in the KV cache (the first one may not).
    kw = dict(model=MODEL, messages=STORY, max_tokens=16, temperature=0.8, seed=1234)
    ra = client.chat.completions.create(**kw)
    rb = client.chat.completions.create(**kw)
    a, b = ra.choices[0].message.content, rb.choices[0].message.content
    assert a and a == b, (
        f"seed 1234 gave different texts: {a!r} (cached_tokens "
        f"{ra.usage.prompt_tokens_details.cached_tokens}) vs {b!r} (cached_tokens "
        f"{rb.usage.prompt_tokens_details.cached_tokens})"
    )


def test_seed_differs_across_seeds(client):
    texts = {
        client.chat.completions.create(
            model=MODEL, messages=STORY, max_tokens=16, temperature=0.8, seed=s
        ).choices[0].message.content
        for s in (1, 2, 3, 4)
    }
    assert len(texts) > 1, texts


def _greedy(client, messages, **kw):
    return client.chat.completions.create(model=MODEL, messages=messages, temperature=0, **kw)


@pytest.mark.parametrize("stop", [".", ["."], ["zzzq", "."]])
def test_stop(client, stop):
    full = _greedy(client, FRANCE, max_tokens=32).choices[0].message.content
    assert "." in full, f"precondition: the greedy answer has a period within 32 tokens: {full!r}"
    r = _greedy(client, FRANCE, max_tokens=32, stop=stop)
    text = r.choices[0].message.content
    assert "." not in text, text
    assert r.choices[0].finish_reason == "stop"
    assert text == full[: full.index(".")], (text, full)


def test_stop_streamed(client):
    full = _greedy(client, FRANCE, max_tokens=32).choices[0].message.content
    assert "." in full, full
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=FRANCE, max_tokens=32, temperature=0, stop=["."], stream=True
        )
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == full[: full.index(".")]
    assert [ch for ch in chunks if ch.choices][-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_fields(client, field):
    r = _greedy(client, STORY, **{field: 5})
    assert r.usage.completion_tokens == 5, r.usage
    assert r.choices[0].finish_reason == "length"


def test_chat_logprobs(client):
    r = _greedy(client, FRANCE, max_tokens=6, logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content, r
    assert len(lp.content) == r.usage.completion_tokens
    for entry in lp.content:
        assert isinstance(entry.token, str)
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3, entry
        tops = [t.logprob for t in entry.top_logprobs]
        assert all(t <= 0 for t in tops)
        assert tops == sorted(tops, reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert entry.logprob == pytest.approx(tops[0], abs=1e-4)
        assert entry.top_logprobs[0].token == entry.token
    assert "".join(e.token for e in lp.content) == r.choices[0].message.content


def test_chat_logprobs_streamed(client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=FRANCE, max_tokens=4, temperature=0, logprobs=True,
            top_logprobs=2, stream=True,
        )
    )
    entries = [e for ch in chunks if ch.choices and ch.choices[0].logprobs
               for e in (ch.choices[0].logprobs.content or [])]
    assert entries, "no logprobs in the stream"
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 2


def test_n_2(client):
    try:
        r = client.chat.completions.create(
            model=MODEL, messages=FRANCE, max_tokens=4, temperature=0.8, n=2
        )
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "n" in str(e.body).lower()
        return
    assert [c.index for c in r.choices] == [0, 1]


def test_logit_bias_bans_greedy_first_token(client, http):
    first = _greedy(client, FRANCE, max_tokens=1)
    text = first.choices[0].message.content
    assert text, first
    ids = http.post("/tokenize", json={"content": text}).json()["tokens"]
    assert len(ids) == 1, f"first token {text!r} re-tokenizes to {ids}"
    banned = ids[0]
    r = _greedy(client, FRANCE, max_tokens=1, logit_bias={str(banned): -100})
    assert r.choices[0].message.content != text
    # A neutral bias changes nothing.
    same = _greedy(client, FRANCE, max_tokens=1, logit_bias={str(banned): 0})
    assert same.choices[0].message.content == text


def test_logit_bias_forces_token(client, http):
    forced = http.post("/tokenize", json={"content": " banana"}).json()["tokens"]
    assert len(forced) == 1, forced
    r = _greedy(client, FRANCE, max_tokens=2, logit_bias={str(forced[0]): 100})
    assert r.choices[0].message.content.startswith(" banana"), r.choices[0].message.content
