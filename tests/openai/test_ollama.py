"""ollama's API on `lume serve`, through the official `ollama` Python client (and httpx for the
raw NDJSON lines and the error bodies): /api/chat, /api/generate, /api/embed, /api/pull,
/api/tags, /api/show, /api/ps, /api/version.

Greedy decoding, so an ollama answer is compared with the OpenAI route's answer to the same
messages. Tool calls run on qwen2.5-coder-0.5b (its template has a tools section).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import httpx
import jsonschema
import ollama
import pytest

from conftest import API_KEY, AUTH, CTX_SIZE, MODEL, REPO_ROOT, REQUEST_TIMEOUT_S, TOOL_MODEL
from helpers import assert_healthy

HI = [{"role": "user", "content": "Write one sentence about the sea."}]
GREEDY = {"temperature": 0, "num_predict": 24}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@pytest.fixture(scope="module")
def oc(server) -> ollama.Client:
    return ollama.Client(host=server.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S)


@pytest.fixture(scope="module")
def qwen_oc(qwen_server) -> ollama.Client:
    return ollama.Client(host=qwen_server.url, timeout=REQUEST_TIMEOUT_S)


def openai_text(client, messages, max_tokens=24, **kw) -> tuple[str, str]:
    r = client.chat.completions.create(
        model=MODEL, messages=messages, temperature=0, max_tokens=max_tokens, **kw)
    return r.choices[0].message.content, r.choices[0].finish_reason


def check_stats(r) -> None:
    """The last line's statistics: counts and nanosecond durations."""
    assert r.done is True
    assert r.done_reason in ("stop", "length"), r
    assert r.prompt_eval_count > 0 and r.eval_count > 0, r
    for k in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        v = getattr(r, k)
        assert isinstance(v, int) and v >= 0, (k, v)
    assert r.total_duration >= r.eval_duration
    assert r.created_at and r.created_at.endswith("Z")
    datetime.fromisoformat(r.created_at[:26] + "+00:00")  # RFC 3339 (to microseconds)


def test_chat_whole_and_streamed(oc, client):
    r = oc.chat(model=MODEL, messages=HI, options=GREEDY, stream=False)
    assert r.model == MODEL
    assert r.message.role == "assistant"
    assert isinstance(r.message.content, str) and r.message.content
    check_stats(r)
    want, reason = openai_text(client, HI)
    assert r.message.content == want, "greedy /api/chat differs from /v1/chat/completions"
    assert r.done_reason == reason
    parts = list(oc.chat(model=MODEL, messages=HI, options=GREEDY, stream=True))
    assert len(parts) >= 2
    assert all(p.done is False for p in parts[:-1])
    assert parts[-1].done is True and parts[-1].message.content == ""
    check_stats(parts[-1])
    assert "".join(p.message.content for p in parts) == want
    assert parts[-1].eval_count == r.eval_count


def test_chat_streams_ndjson_by_default(http):
    """No `stream` field: NDJSON lines, ollama's default."""
    with http.stream("POST", "/api/chat", json={
            "model": MODEL, "messages": HI, "options": GREEDY}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(x) for x in r.iter_lines() if x.strip()]
    assert lines[-1]["done"] is True and lines[-1]["done_reason"] in ("stop", "length")
    assert all(x["done"] is False and x["message"]["role"] == "assistant" for x in lines[:-1])
    for k in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
              "eval_count", "eval_duration"):
        assert isinstance(lines[-1][k], int), k


def test_multi_turn_and_latest_tag(oc, client):
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another one?"},
    ]
    r = oc.chat(model=f"{MODEL}:latest", messages=msgs, options=GREEDY)
    assert r.model == f"{MODEL}:latest"
    assert r.message.content == openai_text(client, msgs)[0]


def test_generate_templated_raw_and_streamed(oc, client, http):
    prompt = "Write one sentence about the sea."
    r = oc.generate(model=MODEL, prompt=prompt, options=GREEDY)
    check_stats(r)
    assert r.response == openai_text(client, [{"role": "user", "content": prompt}])[0]
    parts = list(oc.generate(model=MODEL, prompt=prompt, options=GREEDY, stream=True))
    assert "".join(p.response for p in parts) == r.response and parts[-1].done
    sys_r = oc.generate(model=MODEL, prompt=prompt, system="Answer in French.", options=GREEDY)
    assert sys_r.response == openai_text(client, [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": prompt}])[0]
    # raw: the prompt as is, the same as /v1/completions.
    raw = oc.generate(model=MODEL, prompt="The capital of France is", raw=True, options=GREEDY)
    c = http.post("/v1/completions", json={
        "model": MODEL, "prompt": "The capital of France is", "temperature": 0, "max_tokens": 24})
    assert raw.response == c.json()["choices"][0]["text"]


def test_num_predict_and_stop(oc):
    r = oc.chat(model=MODEL, messages=HI, options={"temperature": 0, "num_predict": 3})
    assert r.done_reason == "length" and r.eval_count == 3
    full = oc.chat(model=MODEL, messages=HI, options=GREEDY).message.content
    words = full.split()
    assert len(words) >= 3, full
    stop = " " + words[2]
    r = oc.chat(model=MODEL, messages=HI, options={**GREEDY, "stop": [stop, "zzqx"]})
    assert r.done_reason == "stop"
    assert r.message.content == full[: full.index(stop)]
    # num_ctx is accepted (the server's context holds); unknown options are ignored.
    r = oc.chat(model=MODEL, messages=HI,
                options={**GREEDY, "num_ctx": 65536, "mirostat": 0, "no_such_option": 1})
    assert r.message.content == full


def test_format_json_and_schema(oc, client):
    ask = [{"role": "user", "content": "Describe a cat as a JSON object with two keys."}]
    r = oc.chat(model=MODEL, messages=ask, format="json",
                options={"temperature": 0, "num_predict": 200})
    want, _ = openai_text(client, ask, max_tokens=200, response_format={"type": "json_object"})
    assert r.message.content == want
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.message.content), dict)
    schema = json.loads((REPO_ROOT / "testdata/schemas/additional_false.json").read_text())
    ask = [{"role": "user", "content": f"Give a point as JSON: {json.dumps(schema)}"}]
    for kind in ("chat", "generate"):
        if kind == "chat":
            r = oc.chat(model=MODEL, messages=ask, format=schema,
                        options={"temperature": 0, "num_predict": 120})
            text = r.message.content
        else:
            r = oc.generate(model=MODEL, prompt=ask[0]["content"], format=schema,
                            options={"temperature": 0, "num_predict": 120})
            text = r.response
        assert r.done_reason == "stop", text
        jsonschema.validate(json.loads(text), schema)


def test_tools_arguments_are_objects(qwen_oc):
    ask = [{"role": "user", "content": "What is the weather like in Paris today, in celsius?"}]
    r = qwen_oc.chat(model=TOOL_MODEL, messages=ask, tools=[WEATHER],
                     options={"temperature": 0, "num_predict": 120})
    assert r.message.tool_calls, r.message
    call = r.message.tool_calls[0]
    assert call.function.name == "get_weather"
    args = call.function.arguments
    assert isinstance(args, dict) and set(args) == {"city", "unit"}, args
    assert "paris" in args["city"].lower()
    # Streamed: the call comes whole in one line.
    parts = list(qwen_oc.chat(model=TOOL_MODEL, messages=ask, tools=[WEATHER],
                              options={"temperature": 0, "num_predict": 120}, stream=True))
    calls = [c for p in parts for c in (p.message.tool_calls or [])]
    assert len(calls) == 1 and calls[0].function.arguments == args
    # The call and its result go back into the conversation (arguments as an object).
    follow = ask + [
        {"role": "assistant", "content": "",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": args}}]},
        {"role": "tool", "content": '{"temperature": 22, "unit": "celsius"}',
         "tool_name": "get_weather"},
    ]
    r = qwen_oc.chat(model=TOOL_MODEL, messages=follow, tools=[WEATHER],
                     options={"temperature": 0, "num_predict": 40})
    assert r.done and isinstance(r.message.content, str)
    assert not r.message.tool_calls or r.message.content is not None


def test_embed_matches_v1_embeddings(oc, client):
    texts = ["The cat sat on the mat.", "A dog ran in the park."]
    r = oc.embed(model=MODEL, input=texts)
    ref = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert len(r.embeddings) == 2
    for got, want in zip(r.embeddings, ref.data):
        assert len(got) == len(want.embedding)
        assert max(abs(a - b) for a, b in zip(got, want.embedding)) < 1e-6
    assert r.prompt_eval_count == ref.usage.prompt_tokens
    one = oc.embed(model=MODEL, input=texts[0])
    assert len(one.embeddings) == 1
    assert max(abs(a - b) for a, b in zip(one.embeddings[0], r.embeddings[0])) < 1e-6
    # truncate: false refuses a text longer than the model takes.
    with pytest.raises(ollama.ResponseError) as e:
        oc.embed(model=MODEL, input="word " * 9000, truncate=False)
    assert e.value.status_code == 400 and "truncate" in str(e.value.error)


def test_tags_show_ps_version(oc, http):
    tags = oc.list()
    assert len(tags.models) == 1
    m = tags.models[0]
    assert m.model == f"{MODEL}:latest"
    assert m.details.format == "gguf" and m.details.family == "llama"
    assert m.details.quantization_level == "Q4_1"
    assert m.details.parameter_size.endswith("M")
    assert m.size > 50_000_000 and len(m.digest) == 64
    assert m.modified_at.year >= 2020
    raw = http.get("/api/tags").json()["models"][0]
    assert raw["name"] == f"{MODEL}:latest"

    s = oc.show(MODEL)
    assert s.modelinfo["general.architecture"] == "llama"
    assert s.modelinfo["general.parameter_count"] > 100_000_000
    assert s.modelinfo["tokenizer.ggml.tokens"] == []  # long arrays left out unless verbose
    assert "completion" in s.capabilities and "tools" in s.capabilities
    assert "{%" in s.template and s.modelfile.startswith("# Modelfile")
    assert "num_ctx" in s.parameters and s.details.family == "llama"
    verbose = http.post("/api/show", json={"model": MODEL, "verbose": True}).json()
    assert len(verbose["model_info"]["tokenizer.ggml.tokens"]) > 1000
    with pytest.raises(ollama.ResponseError) as e:
        oc.show("no-such-model")
    assert e.value.status_code == 404 and "no-such-model" in e.value.error

    ps = oc.ps()
    assert len(ps.models) == 1
    p = ps.models[0]
    assert p.model == f"{MODEL}:latest" and p.size_vram == 0 and p.size == m.size
    assert p.expires_at > datetime.now(timezone.utc)
    assert p.context_length == CTX_SIZE

    v = http.get("/api/version")
    assert v.status_code == 200 and isinstance(v.json()["version"], str)


def test_pull_cached_model_streams_progress(oc):
    digest = oc.list().models[0].digest
    lines = list(oc.pull(MODEL, stream=True))
    statuses = [x.status for x in lines]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success", statuses
    assert "verifying sha256 digest" in statuses
    down = [x for x in lines if x.status.startswith("downloading")]
    assert down and down[-1].completed == down[-1].total == oc.list().models[0].size
    assert down[-1].digest == f"sha256:{digest}"
    assert oc.pull(f"{MODEL}:latest").status == "success"  # stream: false


def test_pull_unknown_name_is_404(oc, http):
    with pytest.raises(ollama.ResponseError) as e:
        list(oc.pull("no-such-model", stream=True))
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    r = http.post("/api/pull", json={})
    assert r.status_code == 400 and "model" in r.json()["error"]


def test_load_and_unload_requests(oc):
    r = oc.generate(model=MODEL, prompt="")
    assert r.done and r.done_reason == "load" and r.response == ""
    r = oc.generate(model=MODEL, prompt="", keep_alive=0)
    assert r.done_reason == "unload"
    r = oc.chat(model=MODEL, messages=[], keep_alive="5m")
    assert r.done_reason == "load"
    # The model is still there.
    assert oc.generate(model=MODEL, prompt="Hi", options={"num_predict": 2}).eval_count == 2


@pytest.mark.parametrize("path,body,status,needle", [
    ("/api/chat", {"model": MODEL, "messages": HI, "options": {"temperature": "hot"}},
     400, "options.temperature"),
    ("/api/chat", {"model": MODEL, "messages": HI, "options": {"temperature": 5}},
     400, "options.temperature"),
    ("/api/chat", {"model": MODEL, "messages": HI, "options": {"top_p": 0}}, 400, "options.top_p"),
    ("/api/chat", {"model": MODEL, "messages": HI, "options": {"stop": [1]}}, 400, "options.stop"),
    ("/api/chat", {"model": MODEL, "messages": "hi"}, 400, "messages"),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": 3}]},
     400, "messages[0].content"),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
     400, "role"),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x",
                                                 "images": ["aGk="]}]}, 400, "images"),
    ("/api/chat", {"model": MODEL, "messages": HI, "format": "yaml"}, 400, "format"),
    ("/api/chat", {"model": MODEL, "messages": HI, "format": {"type": "string",
                                                             "maxLenght": 3}},
     400, "format"),
    ("/api/chat", {"model": MODEL, "messages": HI, "keep_alive": "soon"}, 400, "keep_alive"),
    ("/api/chat", {"model": MODEL, "messages": HI, "think": True}, 400, "think"),
    ("/api/chat", {"model": MODEL, "messages": HI, "tools": [{"type": "function"}]},
     400, "tools[0]"),
    ("/api/chat", {"model": "llama3", "messages": HI}, 404, "llama3"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "template": "{{ .Prompt }}"},
     400, "template"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "images": ["aGk="]}, 400, "images"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "suffix": "y"}, 400, "suffix"),
    ("/api/generate", {"model": MODEL, "prompt": 5}, 400, "prompt"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_predict": "many"}},
     400, "options.num_predict"),
    ("/api/embed", {"model": MODEL, "input": 5}, 400, "input"),
    ("/api/embed", {"model": MODEL, "input": "x", "dimensions": 3}, 400, "dimensions"),
    ("/api/show", {"model": 5}, 400, "model"),
])
def test_bad_requests_are_ollama_errors(server, http, path, body, status, needle):
    r = http.post(path, json=body)
    assert r.status_code == status, r.text
    err = r.json()
    assert isinstance(err, dict) and set(err) == {"error"} and isinstance(err["error"], str), err
    assert needle.lower() in err["error"].lower(), err
    assert_healthy(server)


def test_error_shapes_through_the_client(server, http):
    oc = ollama.Client(host=server.url, timeout=REQUEST_TIMEOUT_S)  # no key
    with pytest.raises(ollama.ResponseError) as e:
        oc.chat(model=MODEL, messages=HI)
    assert e.value.status_code == 401 and isinstance(e.value.error, str)
    r = http.post("/api/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    keyed = ollama.Client(host=server.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S)
    with pytest.raises(ollama.ResponseError) as e:
        keyed.chat(model=MODEL, messages=HI, options={"temperature": 9})
    assert e.value.status_code == 400 and "options.temperature" in e.value.error
    with pytest.raises(ollama.ResponseError) as e:
        list(keyed.chat(model=MODEL, messages=HI, options={"temperature": 9}, stream=True))
    assert e.value.status_code == 400
    assert_healthy(server)
    assert httpx.get(f"{server.url}/api/version", timeout=REQUEST_TIMEOUT_S,
                     headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
