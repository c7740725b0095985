"""A base model without a chat template (gemma3-270m), served without an API key."""

import json

import openai
import pytest

from conftest import BASE_MODEL
from helpers import assert_error_body, assert_healthy


def test_base_model_chat_is_400(base_http, base_server):
    r = base_http.post("/v1/chat/completions", json={
        "model": BASE_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4})
    err = assert_error_body(r, 400)
    msg = err["message"].lower()
    assert "chat template" in msg or "chat_template" in msg, err["message"]
    assert "/v1/completions" in msg, err["message"]
    assert_healthy(base_server)


def test_base_model_chat_openai_client(base_client):
    with pytest.raises(openai.BadRequestError) as ei:
        base_client.chat.completions.create(
            model=BASE_MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert "/v1/completions" in ei.value.message


def test_base_model_completions_work_without_key(base_client, base_http):
    assert base_http.get("/health").json() == {"status": "ok"}
    ids = [m.id for m in base_client.models.list().data]
    assert BASE_MODEL in ids, ids
    r = base_client.completions.create(model=BASE_MODEL, prompt="The capital of France is",
                                       max_tokens=4, temperature=0)
    assert r.choices[0].text
    r = base_http.post("/v1/completions", json={"prompt": "Hello", "max_tokens": 2})
    assert r.status_code == 200, r.text


def test_base_model_health_while_loading_is_503(base_server):
    expected = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    for status, text in base_server.startup_health:
        assert status == 503, (status, text)
        assert json.loads(text) == expected, text
