"""Tool calls through the official `openai` client against qwen2.5-coder-0.5b (its template has
a tools section and the `<tool_call>` form), and against smollm2-135m (no tool support in its
template: the tools are described in the system message)."""

from __future__ import annotations

import json

import pytest

from conftest import MODEL, TOOL_MODEL
from helpers import assert_error_body

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
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "maxLength": 40}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather like in Paris today, in celsius?"}]


def check_weather_call(call):
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"}, args
    assert args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args["city"], str) and args["city"]
    return args


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_call(qwen_client, choice):
    r = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=ASK, tools=[WEATHER, TIME], tool_choice=choice,
        temperature=0, max_tokens=120)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    assert c.message.tool_calls, c.message
    args = check_weather_call(c.message.tool_calls[0])
    assert "paris" in args["city"].lower()


def test_auto_call(qwen_client):
    r = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=120)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls", c
    check_weather_call(c.message.tool_calls[0])


def test_none_means_text(qwen_client):
    r = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=[{"role": "user", "content": "Say hello."}],
        tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=20)
    c = r.choices[0]
    assert c.message.tool_calls is None
    assert c.message.content


def test_streamed_call(qwen_client):
    stream = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
        temperature=0, max_tokens=120, stream=True)
    name, args, ids, finish = "", "", set(), None
    for chunk in stream:
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        for tc in ch.delta.tool_calls or []:
            assert tc.index == 0
            if tc.id:
                ids.add(tc.id)
            if tc.function and tc.function.name:
                name += tc.function.name
            if tc.function and tc.function.arguments:
                args += tc.function.arguments
        finish = ch.finish_reason or finish
    assert finish == "tool_calls"
    assert name == "get_weather" and len(ids) == 1
    a = json.loads(args)
    assert set(a) == {"city", "unit"}


def test_follow_up_with_tool_result(qwen_client, qwen_http):
    first = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
        temperature=0, max_tokens=120)
    call = first.choices[0].message.tool_calls[0]
    msgs = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 18, "sky": "cloudy"}'},
    ]
    # The template renders the call and the result as Qwen2.5 expects them.
    prompt = qwen_http.post("/apply-template", json={"messages": msgs, "tools": [WEATHER]}).json()["prompt"]
    assert '<tool_call>\n{"name": "get_weather", "arguments": {' in prompt, prompt
    assert "<tool_response>\n{\"temperature\": 18, \"sky\": \"cloudy\"}\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    r = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=msgs, tools=[WEATHER], tool_choice="none",
        temperature=0, max_tokens=40)
    assert r.choices[0].message.content


def test_template_without_tools_gets_them_in_the_system_message(client, http):
    prompt = http.post("/apply-template", json={"messages": ASK, "tools": [WEATHER]}).json()["prompt"]
    assert "get_weather" in prompt and "<tool_call>" in prompt
    r = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
        temperature=0, max_tokens=120)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    check_weather_call(c.message.tool_calls[0])


@pytest.mark.parametrize("body,param", [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools[0].function.name"),
    ({"tools": [{"type": "browser"}]}, "tools[0].type"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "array", "uniqueItems": True}}}], "tool_choice": "required"}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer", "nullable": True}}}}}],
      "tool_choice": "required"}, "tools[0].function.parameters"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
     "tool_choice"),
])
def test_bad_tools_are_400(qwen_http, body, param):
    r = qwen_http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 4, **body})
    err = assert_error_body(r, 400)
    assert err["param"] == param, err
