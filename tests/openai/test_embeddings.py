"""/v1/embeddings through the official `openai` client: `lume serve -m minilm-l6` against the
MiniLM reference (testdata/encoders/minilm, within its 1e-5), every input form, base64,
batching of concurrent requests, errors; and embeddings from a language model's server."""

from __future__ import annotations

import base64
import json
import re
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import EMBED_MODEL, REPO_ROOT
from helpers import assert_error_body

REF = json.loads((REPO_ROOT / "testdata" / "encoders" / "minilm" / "expected.json").read_text())
SENTENCES = REF["sentences"]
TOL = 1e-5


def max_diff(a, b) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b))


def test_matches_the_reference(embed_client):
    texts = [s["text"] for s in SENTENCES]
    r = embed_client.embeddings.create(model=EMBED_MODEL, input=texts)
    assert r.model == EMBED_MODEL and len(r.data) == len(texts)
    worst = 0.0
    for d, s in zip(r.data, SENTENCES):
        assert d.index == SENTENCES.index(s)
        worst = max(worst, max_diff(d.embedding, s["embedding"]))
    assert worst <= TOL, worst
    assert r.usage.prompt_tokens == sum(s["n_tokens"] for s in SENTENCES)
    print(f"\nminilm-l6 via /v1/embeddings: max |diff| {worst:.2e} over {len(texts)} sentences")


def test_input_forms_and_base64(embed_client, embed_http):
    s = SENTENCES[0]
    one = embed_client.embeddings.create(model=EMBED_MODEL, input=s["text"]).data[0].embedding
    by_ids = embed_http.post("/v1/embeddings", json={"input": s["token_ids"]}).json()
    by_id_lists = embed_http.post("/v1/embeddings", json={"input": [s["token_ids"]]}).json()
    assert max_diff(by_ids["data"][0]["embedding"], one) == 0
    assert max_diff(by_id_lists["data"][0]["embedding"], one) == 0
    b = embed_http.post("/v1/embeddings", json={"input": s["text"], "encoding_format": "base64"})
    raw = base64.b64decode(b.json()["data"][0]["embedding"])
    vec = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert max_diff(vec, one) == 0
    # The client's default is base64 when numpy is around; ask for it explicitly too.
    r = embed_client.embeddings.create(model=EMBED_MODEL, input=["a", "b"], encoding_format="base64")
    assert len(r.data) == 2


def steps(http) -> float:
    text = http.get("/metrics").text
    m = re.search(r"^lume_embedding_steps_total (\S+)$", text, re.M)
    return float(m.group(1))


def test_concurrent_requests_are_batched(embed_client, embed_http):
    texts = [s["text"] for s in SENTENCES[:16]]
    alone = [embed_client.embeddings.create(model=EMBED_MODEL, input=t).data[0].embedding
             for t in texts]
    before = steps(embed_http)
    with ThreadPoolExecutor(max_workers=16) as ex:
        together = list(ex.map(
            lambda t: embed_client.embeddings.create(model=EMBED_MODEL, input=t).data[0].embedding,
            texts))
    used = steps(embed_http) - before
    for a, b in zip(alone, together):
        assert max_diff(a, b) == 0
    assert used < 16, f"16 concurrent requests took {used} steps"
    print(f"\n16 concurrent embedding requests: {used:.0f} steps")


@pytest.mark.parametrize("body,param", [
    ({"input": []}, "input"),
    ({}, "input"),
    ({"input": [1, "a"]}, "input"),
    ({"input": [[101, 99999999]]}, "input[0]"),
    ({"input": [[]]}, "input[0]"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x", "dimensions": 64}, "dimensions"),
    ({"input": "x", "model": "other"}, "model"),
])
def test_bad_requests(embed_http, body, param):
    r = embed_http.post("/v1/embeddings", json=body)
    err = assert_error_body(r, 404 if param == "model" else 400)
    assert err["param"] == param, err


def test_an_encoder_cannot_generate(embed_http):
    r = embed_http.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    err = assert_error_body(r, 400)
    assert "embedding model" in err["message"] and "/v1/embeddings" in err["message"]
    assert embed_http.get("/health").json() == {"status": "ok"}
    assert embed_http.get("/v1/models").json()["data"][0]["meta"]["n_embd"] == 384


def test_a_language_model_embeds_too(client):
    r = client.embeddings.create(model="smollm2-135m", input=["The cat sat.", "A dog ran."])
    v = r.data[0].embedding
    assert len(v) == 576
    norm = sum(x * x for x in v) ** 0.5
    assert abs(norm - 1) < 1e-4
    again = client.embeddings.create(model="smollm2-135m", input="The cat sat.").data[0].embedding
    assert max_diff(v, again) < 1e-6
