"""API key: Bearer and x-api-key accepted; missing or wrong key is 401; public routes open."""

import openai
import pytest

from conftest import API_KEY, MODEL, REQUEST_TIMEOUT_S
from helpers import assert_error_body

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
def test_no_key_401(anon, route):
    body = CHAT if "chat" in route else {"model": MODEL, "prompt": "Hi", "max_tokens": 2}
    err = assert_error_body(anon.post(route, json=body), 401)
    assert err["type"], err


def test_no_key_401_models(anon):
    assert_error_body(anon.get("/v1/models"), 401)


def test_wrong_key_401(anon):
    r = anon.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
    assert_error_body(r, 401)
    r = anon.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": "nope"})
    assert_error_body(r, 401)


def test_wrong_key_openai_client(server):
    bad = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong-key",
                        timeout=REQUEST_TIMEOUT_S, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.chat.completions.create(**CHAT)
    assert ei.value.status_code == 401
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_bearer_key(anon):
    r = anon.post("/v1/chat/completions", json=CHAT,
                  headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 200, r.text


def test_x_api_key(anon):
    r = anon.post("/v1/chat/completions", json=CHAT, headers={"x-api-key": API_KEY})
    assert r.status_code == 200, r.text


def test_public_routes_without_key(anon):
    assert anon.get("/health").status_code == 200
    assert anon.get("/metrics").status_code == 200
