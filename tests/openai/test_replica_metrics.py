"""The replica contract: what routers read from /metrics moves as the load does.

Inference gateways (the Inference Extension's endpoint picker, LiteLLM, llm-d) pick a replica
from vLLM's metric names. During a bounded concurrent load on the `server` fixture (more
requests than slots, so some wait), /metrics is scraped in a loop, and:

* vllm:num_requests_waiting and vllm:num_requests_running rise above 0, then fall back to 0;
* vllm:kv_cache_usage_perc stays in [0, 1] and is above 0 while requests run, 0 after;
* the token counters grow by exactly the tokens the answers report (usage);
* the latency histograms (TTFT, inter-token, end-to-end, queue time) and
  vllm:request_success_total count every request; histogram buckets are cumulative.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import AUTH, MODEL, N_PARALLEL, REQUEST_TIMEOUT_S

N_REQUESTS = 3 * N_PARALLEL  # more than the slots: some must wait
MAX_TOKENS = 24
LOAD_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 20.0

ML = f'model_name="{MODEL}"'
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def scrape(url: str) -> dict[tuple[str, str], float]:
    r = httpx.get(f"{url}/metrics", timeout=10.0)
    assert r.status_code == 200, r.text[:300]
    out = {}
    for line in r.text.splitlines():
        m = _SAMPLE.match(line)
        if m and not line.startswith("#"):
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def g(m: dict, name: str, labels: str = ML) -> float:
    key = (name, "{" + labels + "}" if labels else "")
    assert key in m, f"{name}{{{labels}}} missing from /metrics"
    return m[key]


def success_total(m: dict) -> float:
    return sum(g(m, "vllm:request_success_total", f'{ML},finished_reason="{r}"')
               for r in ("stop", "length", "abort"))


HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
)


def test_router_metrics_follow_the_load(server):
    url = server.url
    before = scrape(url)
    assert g(before, "vllm:num_requests_running") == 0
    assert g(before, "vllm:num_requests_waiting") == 0
    assert g(before, "vllm:kv_cache_usage_perc") == 0

    usages: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        try:
            r = httpx.post(f"{url}/v1/completions", headers=AUTH, timeout=REQUEST_TIMEOUT_S,
                           json={"model": MODEL, "prompt": f"Count from {i} upwards:",
                                 "max_tokens": MAX_TOKENS, "temperature": 0})
            assert r.status_code == 200, r.text[:300]
            with lock:
                usages.append(r.json()["usage"])
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            with lock:
                errors.append(repr(e))

    samples = []  # (waiting, running, kv)
    with ThreadPoolExecutor(N_REQUESTS) as pool:
        futures = [pool.submit(one, i) for i in range(N_REQUESTS)]
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while not all(f.done() for f in futures):
            assert time.monotonic() < deadline, "the load did not finish in time"
            m = scrape(url)
            samples.append((g(m, "vllm:num_requests_waiting"), g(m, "vllm:num_requests_running"),
                            g(m, "vllm:kv_cache_usage_perc")))
            time.sleep(0.01)
    assert not errors, errors[:3]
    assert len(usages) == N_REQUESTS

    # The gauges rose with the load: requests waited (more than the slots), ran, held KV.
    assert samples, "no scrape happened during the load"
    assert max(w for w, _, _ in samples) >= 1, f"never saw a request waiting: {samples[:20]}"
    assert max(r for _, r, _ in samples) >= 1, "never saw a request running"
    assert max(r for _, r, _ in samples) <= N_PARALLEL
    assert all(0.0 <= kv <= 1.0 for _, _, kv in samples), "kv usage out of [0, 1]"
    # (A request just given a slot holds no KV yet, so not every sample with running > 0 does.)
    assert any(kv > 0 for _, r, kv in samples if r > 0), "kv usage stayed 0 while requests ran"

    # ... and fall back once it is over.
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        after = scrape(url)
        idle = (g(after, "vllm:num_requests_running") == 0
                and g(after, "vllm:num_requests_waiting") == 0)
        if idle or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert idle, "running/waiting did not return to 0"
    assert g(after, "vllm:kv_cache_usage_perc") == 0
    assert g(after, "llamacpp:requests_processing", "") == 0
    assert g(after, "llamacpp:requests_deferred", "") == 0

    # Token counters grew by what the answers report.
    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    d = lambda name, labels=ML: g(after, name, labels) - g(before, name, labels)  # noqa: E731
    assert d("vllm:prompt_tokens_total") == prompt
    assert d("vllm:generation_tokens_total") == completion
    assert d("llamacpp:tokens_predicted_total", "") == completion
    # Evaluated prompt tokens exclude the ones reused from a slot's cache.
    assert d("llamacpp:prompt_tokens_total", "") + d("lume_prompt_tokens_cached_total", "") \
        == prompt
    assert success_total(after) - success_total(before) == N_REQUESTS

    # Every request is in each latency histogram once (inter-token: once per token after the
    # first), the sums grew, and the buckets are cumulative with +Inf == count.
    for h in HISTOGRAMS:
        dc = d(f"{h}_count")
        if h == "vllm:inter_token_latency_seconds":
            assert dc == completion - N_REQUESTS, (h, dc)
        else:
            assert dc == N_REQUESTS, (h, dc)
        assert d(f"{h}_sum") > 0 or h == "vllm:request_queue_time_seconds", h
        buckets = sorted(
            ((float(re.search(r'le="([^"]+)"', lab).group(1)), v)
             for (name, lab), v in after.items() if name == f"{h}_bucket"),
            key=lambda t: t[0])
        assert buckets and buckets[-1][0] == float("inf")
        assert buckets[-1][1] == g(after, f"{h}_count")
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{h}: buckets not cumulative"
    # Requests waited for a slot, so the queue-time histogram saw time spent.
    assert d("vllm:request_queue_time_seconds_sum") > 0


@pytest.mark.parametrize("route", ["/v1/completions"])
def test_request_counter_by_route(server, route):
    """lume_http_requests_total counts answers by route and status (what a gateway's error
    budget reads)."""
    key = ("lume_http_requests_total", f'{{route="{route}",status="200"}}')
    n0 = scrape(server.url).get(key, 0)
    r = httpx.post(f"{server.url}{route}", headers=AUTH, timeout=REQUEST_TIMEOUT_S,
                   json={"model": MODEL, "prompt": "Hi", "max_tokens": 2})
    assert r.status_code == 200
    assert scrape(server.url)[key] == n0 + 1
