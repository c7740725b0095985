"""/v1/rerank (and /rerank): llama-server's answer plus `return_documents`, against the tiny
cross-encoder reference of testdata/encoders/rerank (logits within its README's 1e-5)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO_ROOT
from helpers import assert_error_body

REF = json.loads((REPO_ROOT / "testdata" / "encoders" / "rerank" / "expected.json").read_text())
TOL = 1e-5


def test_scores_match_the_reference(rerank_http):
    for c in REF["cases"]:
        r = rerank_http.post("/v1/rerank", json={"query": c["query"], "documents": [c["document"]]})
        assert r.status_code == 200, r.text
        got = r.json()["results"][0]["relevance_score"]
        assert abs(got - c["logit_f64"]) <= TOL, (c["query"], got, c["logit_f64"])


def test_order_top_n_and_documents(rerank_http):
    q = REF["cases"][0]["query"]
    docs = [c["document"] for c in REF["cases"]]
    full = rerank_http.post("/rerank", json={"query": q, "documents": docs}).json()
    scores = [r["relevance_score"] for r in full["results"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(r["index"] for r in full["results"]) == list(range(len(docs)))
    assert "document" not in full["results"][0]
    assert full["usage"]["prompt_tokens"] > 0
    top = rerank_http.post("/v1/rerank", json={
        "query": q, "documents": [{"text": d} for d in docs], "top_n": 3,
        "return_documents": True}).json()
    assert len(top["results"]) == 3
    for a, b in zip(top["results"], full["results"][:3]):
        assert a["index"] == b["index"] and a["relevance_score"] == b["relevance_score"]
        assert a["document"]["text"] == docs[a["index"]]


def test_concurrent_requests_agree(rerank_http):
    cases = REF["cases"]
    alone = [rerank_http.post("/v1/rerank", json={"query": c["query"], "documents": [c["document"]]})
             .json()["results"][0]["relevance_score"] for c in cases]
    with ThreadPoolExecutor(max_workers=8) as ex:
        together = list(ex.map(lambda c: rerank_http.post("/v1/rerank", json={
            "query": c["query"], "documents": [c["document"]]}).json()["results"][0]["relevance_score"],
            cases))
    assert alone == together


@pytest.mark.parametrize("body,param", [
    ({"documents": ["a"]}, "query"),
    ({"query": "q"}, "documents"),
    ({"query": "q", "documents": []}, "documents"),
    ({"query": "q", "documents": ["a", 3]}, "documents[1]"),
    ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
])
def test_bad_requests(rerank_http, body, param):
    err = assert_error_body(rerank_http.post("/v1/rerank", json=body), 400)
    assert err["param"] == param, err


def test_models_that_cannot_rerank(embed_http, http):
    for h in (embed_http, http):
        err = assert_error_body(h.post("/v1/rerank", json={"query": "q", "documents": ["a"]}), 400)
        assert "cannot rerank" in err["message"], err
