"""Many models, one server: `lume serve` without `-m` serves every cached model by name.

`multi`: `lume serve --max-loaded 2 --keep-alive 3s` (no `-m`), with the main server's slots
and context so that its greedy answers can be compared with the single-model servers'.
`small`: a second one over a cache folder of its own (LUME_CACHE_DIR, the models linked in
one by one), with `--max-loaded 1 --max-memory 256M`: a model cached after the start joins,
one too large for the budget is refused.

Every wait is bounded; the models' state is read from /api/ps and /metrics.
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from conftest import (
    BASE_MODEL, CTX_SIZE, EMBED_MODEL, MODEL, N_PARALLEL, REQUEST_TIMEOUT_S, TOOL_MODEL,
    Server, lume_bin, running, unkeyed_client,
)
from helpers import assert_error_body, assert_healthy

ALL = [MODEL, BASE_MODEL, TOOL_MODEL, EMBED_MODEL]
KEEP_S = 3.0
HI = [{"role": "user", "content": "Write one sentence about the sea."}]


@pytest.fixture(scope="module")
def multi():
    yield from running("multi", [
        "--max-loaded", "2", "--keep-alive", f"{KEEP_S:.0f}s", "--threads", "2",
        "--parallel", str(N_PARALLEL), "--ctx-size", str(CTX_SIZE),
    ])


@pytest.fixture(scope="module")
def mhttp(multi):
    with httpx.Client(base_url=multi.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="module")
def mclient(multi) -> openai.OpenAI:
    return unkeyed_client(multi)


@pytest.fixture(scope="module")
def moc(multi) -> ollama.Client:
    return ollama.Client(host=multi.url, timeout=REQUEST_TIMEOUT_S)


def in_memory(http) -> dict[str, dict]:
    r = http.get("/api/ps")
    assert r.status_code == 200, r.text
    return {m["name"].removesuffix(":latest"): m for m in r.json()["models"]}


def wait_until(what: str, cond, timeout_s: float = 20.0) -> float:
    """Polls `cond` until true; returns the seconds it took."""
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout_s, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def unload_all(http) -> None:
    for name in in_memory(http):
        r = http.post("/api/generate", json={"model": name, "keep_alive": 0})
        assert r.status_code == 200 and r.json()["done_reason"] == "unload", r.text
    wait_until("every model unloaded", lambda: not in_memory(http))


def metric(http, name: str, **labels) -> float:
    text = http.get("/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([^{ ]+)(?:\{([^}]*)\})? (\S+)$", line)
        if m and m.group(1) == name and want in (m.group(2) or ""):
            total += float(m.group(3))
    return total


def when(ts: str) -> datetime:
    # ollama's RFC 3339 with nanoseconds; Python takes microseconds.
    head, frac = ts.rstrip("Z").split(".")
    return datetime.fromisoformat(f"{head}.{frac[:6]}+00:00")


def test_ready_at_once_and_lists_every_cached_model(multi, mhttp, mclient, moc):
    # /health answered 200 without a "Loading model" 503 first: nothing loads at start.
    assert not any(status == 503 for status, _ in multi.startup_health), multi.startup_health
    assert in_memory(mhttp) == {}
    models = {m.id: m for m in mclient.models.list().data}
    assert set(ALL) <= set(models), sorted(models)
    for name in ALL:
        assert models[name].model_extra["meta"]["loaded"] is False
    tags = {m.model for m in moc.list().models}
    assert {f"{n}:latest" for n in ALL} <= tags, tags
    for m in moc.list().models:
        assert m.size > 10_000_000 and len(m.digest) == 64, m


def test_unknown_or_missing_model(mclient, mhttp, moc):
    with pytest.raises(openai.NotFoundError) as e:
        mclient.chat.completions.create(model="no-such-model", messages=HI, max_tokens=2)
    err = e.value.body
    assert "no-such-model" in err["message"] and MODEL in err["message"], err
    assert err["code"] == "model_not_found"
    with pytest.raises(ollama.ResponseError) as e:
        moc.chat(model="no-such-model:latest", messages=HI)
    assert e.value.status_code == 404 and "no-such-model" in e.value.error
    r = mhttp.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2})
    err = assert_error_body(r, 400, "several models")
    assert err["code"] == "model_required" and err["param"] == "model"
    assert MODEL in err["message"]


def test_answers_equal_the_single_model_servers(mclient, client, qwen_client, base_client):
    for name, single in [(MODEL, client), (TOOL_MODEL, qwen_client)]:
        want = single.chat.completions.create(
            model=name, messages=HI, temperature=0, max_tokens=24)
        got = mclient.chat.completions.create(
            model=name, messages=HI, temperature=0, max_tokens=24)
        assert got.model == name
        assert got.choices[0].message.content == want.choices[0].message.content, name
        assert got.usage.completion_tokens == want.usage.completion_tokens
    want = base_client.completions.create(
        model=BASE_MODEL, prompt="The capital of France is", temperature=0, max_tokens=16)
    got = mclient.completions.create(
        model=BASE_MODEL, prompt="The capital of France is", temperature=0, max_tokens=16)
    assert got.choices[0].text == want.choices[0].text


def test_least_recently_used_is_evicted(mhttp, moc):
    unload_all(mhttp)
    before = metric(mhttp, "lume_model_unloads_total", model=MODEL, reason="evicted")
    for name in [MODEL, BASE_MODEL, TOOL_MODEL]:
        # A long keep_alive: only the budget (--max-loaded 2) makes room.
        r = moc.generate(model=name, prompt="Hi", keep_alive="10m", options={"num_predict": 2})
        assert r.done and r.model == name
    loaded = in_memory(mhttp)
    assert set(loaded) == {BASE_MODEL, TOOL_MODEL}, loaded
    assert metric(mhttp, "lume_model_unloads_total", model=MODEL, reason="evicted") == before + 1
    now = datetime.now(timezone.utc)
    tags = {m.model.removesuffix(":latest"): m for m in moc.list().models}
    for name, m in loaded.items():
        assert now + timedelta(minutes=8) < when(m["expires_at"]) <= now + timedelta(minutes=11)
        # The estimate: the file plus the KV cache of --parallel x --ctx-size.
        assert m["size"] > tags[name].size, (m, tags[name])
        assert m["context_length"] == CTX_SIZE
    assert metric(mhttp, "lume_model_loaded", model=MODEL) == 0
    assert metric(mhttp, "lume_model_loaded", model=TOOL_MODEL) == 1
    unload_all(mhttp)


def test_keep_alive_runs_out(mhttp, mclient):
    unload_all(mhttp)
    before = metric(mhttp, "lume_model_unloads_total", model=MODEL, reason="expired")
    mclient.chat.completions.create(model=MODEL, messages=HI, temperature=0, max_tokens=4)
    m = in_memory(mhttp)[MODEL]
    now = datetime.now(timezone.utc)
    assert now < when(m["expires_at"]) <= now + timedelta(seconds=KEEP_S + 1), m
    took = wait_until("the keep_alive ran out", lambda: MODEL not in in_memory(mhttp))
    assert took >= KEEP_S - 1.5, took
    assert metric(mhttp, "lume_model_unloads_total", model=MODEL, reason="expired") == before + 1


def test_keep_alive_zero_and_load_requests(mhttp, moc):
    unload_all(mhttp)
    r = moc.generate(model=MODEL, prompt="Hi", keep_alive=0, options={"num_predict": 2})
    assert r.eval_count == 2
    wait_until("keep_alive 0 unloaded it", lambda: MODEL not in in_memory(mhttp), 10)
    # ollama's load request: an empty prompt; -1 keeps it for good.
    r = moc.generate(model=MODEL, prompt="", keep_alive=-1)
    assert r.done_reason == "load"
    far = datetime.now(timezone.utc) + timedelta(days=365)
    assert when(in_memory(mhttp)[MODEL]["expires_at"]) > far
    r = moc.chat(model=f"{MODEL}:latest", messages=[], keep_alive=0)
    assert r.done_reason == "unload"
    wait_until("the unload request unloaded it", lambda: MODEL not in in_memory(mhttp), 10)
    # An unload request for a model not in memory loads nothing.
    assert moc.generate(model=BASE_MODEL, prompt="", keep_alive=0).done_reason == "unload"
    assert in_memory(mhttp) == {}


def test_concurrent_first_requests_share_one_load(mhttp, mclient):
    unload_all(mhttp)
    before = metric(mhttp, "lume_model_loads_total", model=TOOL_MODEL)

    def ask(_):
        r = mclient.chat.completions.create(
            model=TOOL_MODEL, messages=HI, temperature=0, max_tokens=6)
        return r.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(4)))
    assert len(set(answers)) == 1, answers
    assert metric(mhttp, "lume_model_loads_total", model=TOOL_MODEL) == before + 1
    assert metric(mhttp, "lume_model_load_seconds_total", model=TOOL_MODEL) > 0


def test_embedding_model_beside_chat_models(mhttp, mclient, moc, embed_client):
    texts = ["The sea is calm tonight.", "Paris is in France."]
    want = embed_client.embeddings.create(model=EMBED_MODEL, input=texts)
    got = mclient.embeddings.create(model=EMBED_MODEL, input=texts)
    assert got.model == EMBED_MODEL and len(got.data) == 2
    for a, b in zip(got.data, want.data):
        assert len(a.embedding) == 384
        assert max(abs(x - y) for x, y in zip(a.embedding, b.embedding)) <= 1e-6
    # A chat model at the same time, by name.
    r = mclient.chat.completions.create(model=MODEL, messages=HI, temperature=0, max_tokens=4)
    assert r.model == MODEL
    assert {EMBED_MODEL, MODEL} <= set(in_memory(mhttp))
    e = moc.embed(model=f"{EMBED_MODEL}:latest", input="The sea is calm tonight.")
    assert max(abs(x - y) for x, y in zip(e.embeddings[0], want.data[0].embedding)) <= 1e-6
    with pytest.raises(openai.BadRequestError) as err:
        mclient.chat.completions.create(model=EMBED_MODEL, messages=HI, max_tokens=2)
    assert "embedding model" in err.value.body["message"]
    models = {m.id: m.model_extra["meta"] for m in mclient.models.list().data}
    assert models[EMBED_MODEL]["loaded"] is True and models[EMBED_MODEL]["kind"] == "embedding"


def test_props_slots_and_metrics_per_model(multi, mhttp):
    p = mhttp.get("/props").json()
    assert p["model"] is None and p["max_loaded"] == 2 and p["keep_alive"] == KEEP_S
    assert {m["id"] for m in p["models"]} >= set(ALL)
    p = mhttp.get("/props", params={"model": MODEL}).json()
    assert p["model"] == MODEL and p["n_ctx"] == CTX_SIZE and p["total_slots"] == N_PARALLEL
    slots = mhttp.get("/slots", params={"model": MODEL}).json()
    assert len(slots) == N_PARALLEL and all(s["model"] == MODEL for s in slots)
    assert_error_body(mhttp.get("/slots", params={"model": "nope"}), 404, "nope")
    text = mhttp.get("/metrics").text
    for name in ALL:
        assert f'lume_model_loaded{{model="{name}"}}' in text
    assert f'vllm:num_requests_running{{model_name="{MODEL}"}}' in text
    assert_healthy(multi)


def catalogue_files() -> tuple[dict[str, str], Path]:
    """name -> file name of the catalogue, and the real cache's models folder
    (from `lume pull --list`)."""
    out = subprocess.run([str(lume_bin()), "pull", "--list"], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    files, folder = {}, None
    for line in out.splitlines():
        if line.startswith("cache: "):
            folder = Path(line.removeprefix("cache: ").strip())
        else:
            parts = line.split()
            if len(parts) >= 4 and parts[0] != "name":
                files[parts[0]] = parts[3]
    assert folder is not None, out
    return files, folder


def link(name: str, cache: Path) -> None:
    """Puts catalogue model `name` into `cache` as a link to the real cache's file."""
    files, real = catalogue_files()
    (cache / "models" / files[name]).symlink_to(real / files[name])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Over a cache folder of its own holding smollm2 only (a link to the real file)."""
    cache = tmp_path_factory.mktemp("lume-cache")
    (cache / "models").mkdir()
    link(MODEL, cache)
    s = Server(name="multi-small", args=[
        "--max-loaded", "1", "--max-memory", "256M", "--keep-alive", "10m",
        "--parallel", "1", "--ctx-size", "512", "--threads", "2",
    ], env={"LUME_CACHE_DIR": str(cache)})
    s.start()
    yield s, cache
    s.stop()


def test_a_model_cached_later_joins_and_the_budget_holds(small):
    srv, cache = small
    with httpx.Client(base_url=srv.url, timeout=REQUEST_TIMEOUT_S) as h:
        assert [m["id"] for m in h.get("/v1/models").json()["data"]] == [MODEL]

        def one(name):
            return h.post("/v1/completions",
                          json={"model": name, "prompt": "Hi", "max_tokens": 2})

        assert_error_body(one(BASE_MODEL), 404, BASE_MODEL)
        # The file arrives in the cache; /api/pull verifies it; the server serves it.
        link(BASE_MODEL, cache)
        r = h.post("/api/pull", json={"model": BASE_MODEL, "stream": False}, timeout=120)
        assert r.status_code == 200 and r.json()["status"] == "success", r.text
        assert BASE_MODEL in [m["id"] for m in h.get("/v1/models").json()["data"]]
        assert one(MODEL).status_code == 200
        r = one(BASE_MODEL)
        assert r.status_code == 200 and r.json()["model"] == BASE_MODEL, r.text
        # --max-loaded 1: gemma3 took smollm2's place.
        assert list(in_memory(h)) == [BASE_MODEL]
        # qwen alone needs more than --max-memory 256M: refused, nothing evicted.
        link(TOOL_MODEL, cache)
        err = assert_error_body(one(TOOL_MODEL), 400, "--max-memory")
        assert err["code"] == "model_too_large" and TOOL_MODEL in err["message"]
        assert list(in_memory(h)) == [BASE_MODEL]
    assert_healthy(srv)
