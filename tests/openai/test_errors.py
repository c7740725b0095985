"""Invalid requests: the right 4xx status, an OpenAI-style error body whose message names the
field, and a server that keeps serving afterwards."""

import json
import select
import socket
import time

import openai
import pytest

from conftest import API_KEY, CTX_SIZE, HOST, MODEL
from helpers import assert_error_body, assert_healthy

USER = [{"role": "user", "content": "Hi"}]


def chat(http, body):
    return http.post("/v1/chat/completions", json=body)


def test_malformed_json(http, server):
    r = http.post("/v1/chat/completions", content=b'{"model": "x", "messages": [',
                  headers={"content-type": "application/json"})
    assert_error_body(r, 400)
    assert_healthy(server)


def test_malformed_json_completions(http, server):
    r = http.post("/v1/completions", content=b"not json at all",
                  headers={"content-type": "application/json"})
    assert_error_body(r, 400)
    assert_healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL, "messages": "Hi"},
        {"model": MODEL, "messages": {"role": "user", "content": "Hi"}},
        {"model": MODEL, "messages": [1, 2]},
        {"model": MODEL, "messages": []},
        {"model": MODEL},
    ],
    ids=["string", "object", "list-of-ints", "empty", "missing"],
)
def test_bad_messages(http, server, body):
    assert_error_body(chat(http, body), 400, "messages")
    assert_healthy(server)


def test_unknown_role(http, server):
    r = chat(http, {"model": MODEL, "messages": [{"role": "wizard", "content": "Hi"}]})
    assert_error_body(r, 400, "role", "wizard")
    assert_healthy(server)


def test_max_tokens_negative(http, server):
    assert_error_body(chat(http, {"model": MODEL, "messages": USER, "max_tokens": -1}), 400,
                      "max_tokens")
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": -1})
    assert_error_body(r, 400, "max_tokens")
    assert_healthy(server)


def test_max_completion_tokens_negative(http, server):
    r = chat(http, {"model": MODEL, "messages": USER, "max_completion_tokens": -1})
    assert_error_body(r, 400, "max_completion_tokens")
    assert_healthy(server)


@pytest.mark.parametrize("temp", [5, -1, 2.5])
def test_temperature_out_of_range(http, server, temp):
    r = chat(http, {"model": MODEL, "messages": USER, "temperature": temp, "max_tokens": 2})
    assert_error_body(r, 400, "temperature")
    assert_healthy(server)


def test_temperature_bounds_accepted(http):
    for temp in (0, 2):
        r = chat(http, {"model": MODEL, "messages": USER, "temperature": temp, "max_tokens": 2})
        assert r.status_code == 200, (temp, r.text)


def test_temperature_openai_client(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=MODEL, messages=USER, temperature=5, max_tokens=2)
    assert ei.value.status_code == 400
    assert "temperature" in ei.value.message.lower()


def test_wrong_type_field(http, server):
    r = chat(http, {"model": MODEL, "messages": USER, "max_tokens": "many"})
    assert_error_body(r, 400, "max_tokens")
    assert_healthy(server)


def test_token_ids_out_of_vocabulary(http, server):
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": [1, 2, 99999999],
                                           "max_tokens": 2})
    assert_error_body(r, 400, "prompt", "99999999")
    assert_healthy(server)


def test_token_ids_out_of_vocabulary_client(client):
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt=[99999999], max_tokens=2)


def test_detokenize_out_of_vocabulary(http, server):
    # Not specified beyond "no crash": either a 4xx error or some text, never a 5xx.
    r = http.post("/detokenize", json={"tokens": [99999999]})
    assert r.status_code < 500, r.text
    assert_healthy(server)


def test_stop_list_too_long(http, server):
    stops = [f"stop{i}" for i in range(100)]
    r = chat(http, {"model": MODEL, "messages": USER, "stop": stops, "max_tokens": 2})
    assert_error_body(r, 400, "stop")
    assert_healthy(server)


def _long_prompt(http):
    prompt = "hello " * 3000
    n = len(http.post("/tokenize", json={"content": prompt}).json()["tokens"])
    assert n > CTX_SIZE, n
    n_ctx = http.get("/props").json()["n_ctx"]
    return prompt, n, n_ctx


def test_prompt_longer_than_context_completions(http, server):
    prompt, n, n_ctx = _long_prompt(http)
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 4})
    err = assert_error_body(r, 400)
    msg = err["message"]
    assert str(n) in msg or str(n + 1) in msg, f"prompt length {n} not in {msg!r}"
    assert str(CTX_SIZE) in msg or str(n_ctx) in msg, f"limit not in {msg!r}"
    assert_healthy(server)


def test_prompt_longer_than_context_chat(http, server):
    prompt, n, n_ctx = _long_prompt(http)
    r = chat(http, {"model": MODEL, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": 4})
    err = assert_error_body(r, 400)
    msg = err["message"]
    assert any(str(k) in msg for k in range(n, n + 80)), f"prompt length ~{n} not in {msg!r}"
    assert str(CTX_SIZE) in msg or str(n_ctx) in msg, f"limit not in {msg!r}"
    assert_healthy(server)


def test_prompt_longer_than_context_streamed(http, server):
    # The check happens before the stream starts: a plain 400, not an SSE stream.
    prompt, _, _ = _long_prompt(http)
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 4,
                                           "stream": True})
    assert_error_body(r, 400)
    assert_healthy(server)


def _raw_post(port, path, body, timeout=60.0):
    """POST `body` over a plain socket, reading while writing, so that a server that answers
    413 and closes before the body is sent in full is still heard. Returns (status, body)."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    data = memoryview(head + body)
    received = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.setblocking(False)
        sent = 0
        while time.monotonic() < deadline:
            want_write = [s] if sent < len(data) else []
            rl, wl, _ = select.select([s], want_write, [], 1.0)
            if rl:
                try:
                    chunk = s.recv(65536)
                except (ConnectionResetError, BrokenPipeError):
                    break
                if not chunk:
                    break
                received += chunk
                if _complete(received):
                    break
            if wl:
                try:
                    sent += s.send(data[sent:sent + (1 << 20)])
                except (ConnectionResetError, BrokenPipeError):
                    sent = len(data)  # the server stopped reading; keep reading its answer
    assert received, "no response at all"
    head_b, _, rest = received.partition(b"\r\n\r\n")
    status = int(head_b.split(b" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (ln.decode().partition(":") for ln in head_b.split(b"\r\n")[1:])}
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, buf = b"", rest
        while buf:
            size_s, _, buf = buf.partition(b"\r\n")
            size = int(size_s.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            out += buf[:size]
            buf = buf[size + 2:]
        rest = out
    return status, rest


def _complete(received):
    head, sep, rest = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    for ln in head.split(b"\r\n")[1:]:
        k, _, v = ln.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v.strip())
    return rest.endswith(b"0\r\n\r\n")


def test_body_too_large(server):
    filler = "a" * (20 * 1024 * 1024)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": filler}],
                       "max_tokens": 2}).encode()
    status, resp = _raw_post(server.port, "/v1/chat/completions", body)
    assert status == 413, (status, resp[:300])
    err = json.loads(resp)["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, err
    assert_healthy(server)


def test_unknown_fields_ignored(http, client):
    r = chat(http, {"model": MODEL, "messages": USER, "max_tokens": 2, "frobnicate": True,
                    "some_vendor_option": {"a": [1, 2]}})
    assert r.status_code == 200, r.text
    r = http.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 2,
                                           "frobnicate": 1})
    assert r.status_code == 200, r.text
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=2,
                                       extra_body={"unknown_knob": 3})
    assert r.choices[0].message.content is not None


def test_still_serving_after_errors(client, server):
    assert_healthy(server)
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=4, temperature=0)
    assert r.choices[0].message.content
