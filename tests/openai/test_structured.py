"""Structured output: every schema of testdata/schemas on all three real models, validated with
the `jsonschema` package; regexes; GBNF and Lark grammars; refusals; max_tokens under a grammar
that never allows the end.

smollm2-135m and qwen2.5-coder-0.5b answer through /v1/chat/completions with OpenAI's
`response_format`; gemma3-270m (a base model, no chat template) through /v1/completions with
llama-server's `json_schema`. Greedy decoding, so a run is reproducible.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jsonschema
import pytest

from conftest import BASE_MODEL, MODEL, REPO_ROOT, TOOL_MODEL
from helpers import assert_error_body

SCHEMAS = REPO_ROOT / "testdata" / "schemas"
REFUSED = SCHEMAS / "refused"
# Enough for every schema of the set (they bound their arrays, strings and decimals).
MAX_TOKENS = 320
# Schemas the models are not run on, with the reason (the grammar tests in
# crates/grammar/tests/schemas.rs still compile them and check instances).
MODEL_SKIP = {
    "ref_recursive.json": "recursion without a depth bound: a greedy 135M-0.5B model nests "
                          "until max_tokens",
}


def schema_files() -> list[Path]:
    files = sorted(p for p in SCHEMAS.glob("*.json") if p.name not in MODEL_SKIP)
    assert len(files) >= 15, f"the schema set in {SCHEMAS} is missing"
    return files


def check_all(model: str, files, results) -> None:
    bad = []
    for p, (text, finish) in zip(files, results):
        try:
            assert finish == "stop", f"finish_reason {finish}: {text[:300]!r}"
            validate(text, load(p), p.name)
        except AssertionError as e:
            bad.append(f"{model} {p.name}: {e}")
    assert not bad, "\n".join(bad)
    print(f"\n{model}: {len(files)} schemas, all valid")


def load(p: Path) -> dict:
    return json.loads(p.read_text())


def validate(text: str, schema: dict, where: str) -> None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise AssertionError(f"{where}: not JSON ({e}): {text!r}") from e
    v = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(v.iter_errors(value), key=str)
    assert not errors, f"{where}: {text!r} does not fit: {errors[0].message}"


def prompt_for(name: str, schema: dict) -> str:
    return (f"Write one example JSON value for the schema named {name}. "
            f"Schema: {json.dumps(schema)}")


def chat_json(client, model: str, path: Path) -> tuple[str, str]:
    schema = load(path)
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt_for(path.stem, schema)}],
        response_format={"type": "json_schema",
                         "json_schema": {"name": path.stem, "schema": schema, "strict": True}},
        temperature=0, max_tokens=MAX_TOKENS)
    return r.choices[0].message.content, r.choices[0].finish_reason


def run_all(fn, files):
    with ThreadPoolExecutor(max_workers=4) as ex:
        return list(ex.map(fn, files))


@pytest.mark.parametrize("model_fixture,model", [("client", MODEL), ("qwen_client", TOOL_MODEL)])
def test_every_schema_on_chat_models(request, model_fixture, model):
    client = request.getfixturevalue(model_fixture)
    files = schema_files()
    check_all(model, files, run_all(lambda p: chat_json(client, model, p), files))


def test_every_schema_on_the_base_model(base_http):
    files = schema_files()

    def one(p: Path):
        schema = load(p)
        r = base_http.post("/v1/completions", json={
            "model": BASE_MODEL, "prompt": prompt_for(p.stem, schema) + "\nJSON:",
            "json_schema": schema, "temperature": 0, "max_tokens": MAX_TOKENS})
        assert r.status_code == 200, r.text
        c = r.json()["choices"][0]
        return c["text"], c["finish_reason"]

    check_all(BASE_MODEL, files, run_all(one, files))


def test_json_object_and_streaming(qwen_client):
    r = qwen_client.chat.completions.create(
        model=TOOL_MODEL, messages=[{"role": "user", "content": "Describe a cat as JSON."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=200)
    assert isinstance(json.loads(r.choices[0].message.content), dict)
    schema = load(schema_files()[0])
    stream = qwen_client.chat.completions.create(
        model=TOOL_MODEL,
        messages=[{"role": "user", "content": prompt_for("x", schema)}],
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        temperature=0, max_tokens=MAX_TOKENS, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    validate(text, schema, "streamed")


@pytest.mark.parametrize("pattern,prompt", [
    (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", "Today's date is"),
    (r"(yes|no)", "Is Paris in France? Answer:"),
    (r"[A-Z][a-z]+( [A-Z][a-z]+)?", "The name of a famous scientist:"),
    (r"\+?[0-9]{1,3} [0-9]{3} [0-9]{4}", "A phone number:"),
])
def test_regex_on_the_base_model(base_http, pattern, prompt):
    r = base_http.post("/v1/completions", json={
        "prompt": prompt, "grammar": {"type": "regex", "value": pattern},
        "temperature": 0, "max_tokens": 40})
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    assert re.fullmatch(pattern, c["text"]), (pattern, c["text"])
    assert c["finish_reason"] == "stop"


def test_gbnf_and_lark_grammars(qwen_http):
    gbnf = 'root ::= "The answer is " [0-9]+ "."'
    r = qwen_http.post("/v1/completions", json={
        "prompt": "What is 6 times 7?", "grammar": gbnf, "temperature": 0, "max_tokens": 20})
    assert r.status_code == 200, r.text
    assert re.fullmatch(r"The answer is [0-9]+\.", r.json()["choices"][0]["text"])
    lark = 'start: "Colour: " ("red" | "green" | "blue")'
    r = qwen_http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Pick a colour"}],
        "grammar": {"type": "lark", "value": lark}, "temperature": 0, "max_tokens": 20})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] in (
        "Colour: red", "Colour: green", "Colour: blue")


def test_json_gbnf_file(qwen_http):
    gbnf = (REPO_ROOT / "testdata" / "grammars" / "json.gbnf").read_text()
    r = qwen_http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "A JSON object describing a book"}],
        "grammar": gbnf, "temperature": 0, "max_tokens": 200})
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    assert c["finish_reason"] == "stop", c
    assert isinstance(json.loads(c["message"]["content"]), dict)


def test_a_grammar_without_an_end_stops_at_max_tokens(qwen_http):
    r = qwen_http.post("/v1/completions", json={
        "prompt": "Say something", "grammar": {"type": "regex", "value": "a{1000}"},
        "temperature": 0, "max_tokens": 12})
    assert r.status_code == 200, r.text
    c = r.json()["choices"][0]
    assert c["finish_reason"] == "length"
    assert set(c["text"]) == {"a"}
    assert r.json()["usage"]["completion_tokens"] == 12


def test_refused_schemas_name_the_keyword(qwen_http):
    expected = json.loads((REFUSED / "expected.json").read_text())
    assert expected, "no refused schemas"
    for name, needle in expected.items():
        schema = json.loads((REFUSED / name).read_text())
        r = qwen_http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": schema}}})
        err = assert_error_body(r, 400)
        assert needle in err["message"], (name, needle, err["message"])
        assert err["param"] == "response_format", err


@pytest.mark.parametrize("body,param", [
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format.json_schema.schema"),
    ({"grammar": 'root ::= "a" undefined-rule'}, "grammar"),
    ({"grammar": {"type": "regex", "value": "(unclosed"}}, "grammar"),
    ({"grammar": {"type": "cfg", "value": "x"}}, "grammar.type"),
    ({"json_schema": {"type": "string", "maxLenght": 3}}, "json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "integer", "nullable": True}}}}}},
     "response_format"),
    ({"json_schema": {"type": "object"}, "grammar": 'root ::= "a"'}, "grammar"),
])
def test_bad_shapes_are_400(qwen_http, body, param):
    r = qwen_http.post("/v1/completions", json={"prompt": "x", "max_tokens": 4, **body})
    err = assert_error_body(r, 400)
    assert err["param"] == param, err
