"""Anthropic's Messages API on `lume serve`, through the official `anthropic` Python client
(and httpx for the raw events and the error bodies): /v1/messages and
/v1/messages/count_tokens.

Greedy decoding, so an answer is compared with the OpenAI route's answer to the same messages.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import pytest

from conftest import API_KEY, MODEL, REQUEST_TIMEOUT_S
from helpers import assert_healthy

HI = [{"role": "user", "content": "Write one sentence about the sea."}]
# This client version has no sampling arguments (newer Claude models dropped them); lume still
# takes `temperature`, `top_p` and `top_k`, sent here as extra body fields.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def ac(server) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=server.url, api_key=API_KEY, timeout=REQUEST_TIMEOUT_S, max_retries=0)


def openai_text(client, messages, max_tokens=24) -> tuple[str, str]:
    r = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=max_tokens)
    return r.choices[0].message.content, r.choices[0].finish_reason


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        out.append((lines[0][7:], json.loads(lines[1][6:])))
    return out


def test_create_matches_openai(ac, client):
    r = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI)
    assert r.id.startswith("msg_") and r.type == "message" and r.role == "assistant"
    assert r.model == MODEL
    assert len(r.content) == 1 and r.content[0].type == "text"
    want, reason = openai_text(client, HI)
    assert r.content[0].text == want
    assert r.stop_reason == {"stop": "end_turn", "length": "max_tokens"}[reason]
    assert r.stop_sequence is None
    assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0


def test_system_and_multi_turn(ac, client):
    msgs = [
        {"role": "user", "content": [{"type": "text", "text": "Name a colour."}]},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    r = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=msgs,
                           system="You are terse.")
    want, _ = openai_text(client, [{"role": "system", "content": "You are terse."},
                                   {"role": "user", "content": "Name a colour."},
                                   {"role": "assistant", "content": "Blue."},
                                   {"role": "user", "content": "Another one?"}])
    assert r.content[0].text == want
    blocks = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=msgs,
                                system=[{"type": "text", "text": "You are terse."}])
    assert blocks.content[0].text == want


def test_prefill_continues_the_assistant(ac, http):
    msgs = HI + [{"role": "assistant", "content": "The sea"}]
    r = ac.messages.create(model=MODEL, max_tokens=16, extra_body=GREEDY, messages=msgs)
    prompt = http.post("/apply-template", json={"messages": HI}).json()["prompt"] + "The sea"
    c = http.post("/v1/completions", json={"prompt": prompt, "temperature": 0, "max_tokens": 16})
    assert r.content[0].text == c.json()["choices"][0]["text"]


def test_streaming_events(ac, http):
    whole = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI)
    with ac.messages.stream(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    r = http.post("/v1/messages", json={
        "model": MODEL, "max_tokens": 8, "temperature": 0, "messages": HI, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    ev = sse_events(r.text)
    names = [n for n, _ in ev]
    assert names[:3] == ["message_start", "content_block_start", "ping"], names
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"], names
    assert set(names[3:-3]) == {"content_block_delta"}, names
    assert all(d["type"] == n for n, d in ev)
    start = ev[0][1]["message"]
    assert start["usage"]["input_tokens"] == whole.usage.input_tokens
    assert start["content"] == [] and start["stop_reason"] is None
    assert all(d["delta"]["type"] == "text_delta" for n, d in ev if n == "content_block_delta")
    delta = ev[-2][1]
    assert delta["delta"]["stop_reason"] == "max_tokens" and delta["usage"]["output_tokens"] == 8


def test_max_tokens_and_stop_sequences(ac):
    r = ac.messages.create(model=MODEL, max_tokens=3, extra_body=GREEDY, messages=HI)
    assert r.stop_reason == "max_tokens" and r.usage.output_tokens == 3
    full = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI)
    text = full.content[0].text
    words = text.split()
    assert len(words) >= 3, text
    stop = " " + words[2]
    r = ac.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI,
                           stop_sequences=["zzqx", stop])
    assert r.stop_reason == "stop_sequence" and r.stop_sequence == stop
    assert r.content[0].text == text[: text.index(stop)]
    with ac.messages.stream(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=HI,
                            stop_sequences=["zzqx", stop]) as s:
        final = s.get_final_message()
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == stop


def test_count_tokens(ac, client):
    msgs = HI
    n = ac.messages.count_tokens(model=MODEL, messages=msgs, system="You are terse.")
    r = ac.messages.create(model=MODEL, max_tokens=2, messages=msgs, system="You are terse.")
    assert n.input_tokens == r.usage.input_tokens > 0
    plain = ac.messages.count_tokens(model=MODEL, messages=msgs)
    usage = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=1).usage
    assert plain.input_tokens == usage.prompt_tokens


def test_keys_by_header(server):
    for headers in ({"x-api-key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
        r = httpx.post(f"{server.url}/v1/messages/count_tokens", headers=headers,
                       json={"model": MODEL, "messages": HI}, timeout=REQUEST_TIMEOUT_S)
        assert r.status_code == 200, r.text
    bad = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0,
                              timeout=REQUEST_TIMEOUT_S)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=4, messages=HI)
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "authentication_error"


def assert_anthropic_error(r: httpx.Response, status: int, needle: str, kind: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}, body
    assert body["error"]["type"] == kind, body
    assert needle.lower() in body["error"]["message"].lower(), body


@pytest.mark.parametrize("body,needle", [
    ({"messages": HI}, "max_tokens"),
    ({"messages": HI, "max_tokens": 0}, "max_tokens"),
    ({"messages": HI, "max_tokens": "ten"}, "max_tokens"),
    ({"max_tokens": 8}, "messages"),
    ({"max_tokens": 8, "messages": []}, "messages"),
    ({"max_tokens": 8, "messages": "hi"}, "messages"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"max_tokens": 8, "messages": [{"role": "user"}]}, "content"),
    ({"max_tokens": 8, "messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}}]}]},
     "image"),
    ({"max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "x", "content": "y"}]}]}, "tool_result"),
    ({"max_tokens": 8, "messages": HI, "system": 5}, "system"),
    ({"max_tokens": 8, "messages": HI, "temperature": 1.5}, "temperature"),
    ({"max_tokens": 8, "messages": HI, "top_p": 0}, "top_p"),
    ({"max_tokens": 8, "messages": HI, "stop_sequences": "x"}, "stop_sequences"),
    ({"max_tokens": 8, "messages": HI, "stop_sequences": [1]}, "stop_sequences"),
    ({"max_tokens": 8, "messages": HI, "tools": [{"name": "f", "input_schema": {}}]}, "tools"),
    ({"max_tokens": 8, "messages": HI, "thinking": {"type": "enabled", "budget_tokens": 1024}},
     "thinking"),
])
def test_bad_requests_are_anthropic_errors(server, http, body, needle):
    r = http.post("/v1/messages", json={"model": MODEL, **body})
    assert_anthropic_error(r, 400, needle, "invalid_request_error")
    assert_healthy(server)


def test_error_shapes_through_the_client(server, ac, http):
    with pytest.raises(anthropic.BadRequestError) as e:
        ac.messages.create(model=MODEL, max_tokens=0, messages=HI)
    assert e.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        ac.messages.create(model="claude-sonnet-4", max_tokens=4, messages=HI)
    assert "claude-sonnet-4" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        ac.messages.count_tokens(model=MODEL, messages=[])
    r = http.post("/v1/messages", content=b"{nope", headers={"content-type": "application/json"})
    assert_anthropic_error(r, 400, "json", "invalid_request_error")
    assert_healthy(server)
