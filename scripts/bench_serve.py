#!/usr/bin/env python3
"""Serving benchmark for an OpenAI-compatible server on this machine (like vLLM's benchmark_serving).

Sends --num-prompts streamed requests (SSE) with at most --concurrency in flight, to a server at a
loopback address only, and reports vLLM's figures: request and token throughput, and mean / median
/ p99 of TTFT, TPOT, ITL and end-to-end latency in milliseconds. Python standard library only.

    python3 scripts/bench_serve.py --base-url http://127.0.0.1:8080 --num-prompts 32 --concurrency 8
    python3 scripts/bench_serve.py --base-url http://127.0.0.1:8080 --endpoint chat --json

Per request: TTFT = first chunk carrying non-empty text (request start = before connecting);
ITL = gaps between successive non-empty text chunks; E2E = until the stream ends;
output tokens = `usage.completion_tokens` when the server sends usage (it is asked for with
`stream_options.include_usage`), otherwise the number of text chunks;
TPOT = (E2E - TTFT) / (output tokens - 1), for requests with more than one output token.

Prompts are the same for the same --seed and --prompt-words. A server with a prompt cache
(llama-server keeps finished prompts in RAM and reuses them) answers a repeated prompt almost at
once, so give every run against one server process its own --seed (or restart the server, or
send `--extra-body '{"cache_prompt": false}'` to llama-server). The warm-up prompts do not overlap
the timed ones.

Bounded: at most 100000 prompts and 1024 concurrent requests; the whole run (warm-up included)
stops by itself after --timeout seconds: requests in flight then count as failed, requests not yet
sent are reported as not sent. Exit status: 0 when every request succeeded, 1 otherwise, 2 on a
usage error or refused URL.
"""

import argparse
import http.client
import ipaddress
import json
import math
import queue
import random
import socket
import sys
import threading
import time
import urllib.parse

MAX_PROMPTS = 100000
MAX_CONCURRENCY = 1024

# Plain words for synthetic prompts (deterministic from --seed; prompts differ from the first word,
# so a server's prefix cache cannot share them).
WORDS = (
    "the of and to in is was for on that with as by at from his her they this which are be have "
    "had one not but all were when we there can an your more their if will would about out up "
    "into them some could time these two may first then do any like my now over such our man me "
    "even most made after also did many before must through back years where much way well down "
    "should because each just those people how too little state good very make world still own "
    "see men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three small "
    "house river mountain garden window morning evening story letter city road forest light water "
    "stone music table paper family friend teacher doctor village market winter summer ocean "
    "island bridge engine machine number answer question reason history science language picture"
).split()


def die(msg):
    print(f"bench_serve: {msg}", file=sys.stderr)
    sys.exit(2)


def parse_base_url(url):
    """Return (host, port, path_prefix) for an http URL whose host is a loopback address."""
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http":
        die(f"--base-url must be http://<loopback>[:port] (got scheme {u.scheme!r})")
    if u.username or u.password or u.query or u.fragment:
        die("--base-url must not carry credentials, a query or a fragment")
    host = u.hostname  # lower-cased, IPv6 brackets removed
    if not host:
        die("--base-url has no host")
    loopback = host == "localhost"
    if not loopback:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        if ip is not None:
            mapped = getattr(ip, "ipv4_mapped", None)
            loopback = ip.is_loopback or (mapped is not None and mapped.is_loopback)
    if not loopback:
        die(f"refusing --base-url host {host!r}: only 127.0.0.0/8, localhost or [::1] are allowed")
    try:
        port = u.port or 80
    except ValueError:
        die("--base-url has an invalid port")
    prefix = u.path.rstrip("/")
    if prefix.endswith("/v1"):
        prefix = prefix[: -len("/v1")]
    # 'localhost' is connected to as 127.0.0.1 so that no resolver is consulted.
    connect_host = "127.0.0.1" if host == "localhost" else host
    return connect_host, port, prefix


def parse_range(text):
    for sep in (":", "-", ","):
        if sep in text:
            a, b = text.split(sep, 1)
            break
    else:
        a = b = text
    try:
        lo, hi = int(a), int(b)
    except ValueError:
        die(f"--prompt-words wants MIN:MAX (got {text!r})")
    if lo < 1 or hi < lo or hi > 100000:
        die(f"--prompt-words wants 1 <= MIN <= MAX <= 100000 (got {text!r})")
    return lo, hi


def make_prompts(n, lo, hi, seed):
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        count = rng.randint(lo, hi)
        words, sentence = [], 0
        for _ in range(count):
            w = rng.choice(WORDS)
            if sentence == 0:
                w = w.capitalize()
            sentence += 1
            if sentence >= rng.randint(8, 16):
                w += "."
                sentence = 0
            words.append(w)
        prompts.append(" ".join(words))
    return prompts


def percentile(sorted_vals, p):
    """numpy.percentile's default (linear interpolation)."""
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    f = math.floor(k)
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (sorted_vals[c] - sorted_vals[f]) * (k - f)


def stats_ms(values, pcts):
    vals = sorted(v * 1000.0 for v in values)
    mean = sum(vals) / len(vals) if vals else float("nan")
    out = {
        "mean": mean,
        "median": percentile(vals, 50),
        "std": math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals)) if vals else float("nan"),
    }
    for p in pcts:
        out[f"p{p:g}"] = percentile(vals, p)
    return out


class Client:
    def __init__(self, args, host, port, prefix, deadline):
        self.args = args
        self.host, self.port, self.prefix = host, port, prefix
        self.deadline = deadline
        self.headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if args.api_key:
            self.headers["Authorization"] = f"Bearer {args.api_key}"
        self.lock = threading.Lock()
        self.open_conns = set()
        self.aborted = threading.Event()

    def remaining(self):
        return self.deadline - time.monotonic()

    def get_json(self, path):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=max(0.1, min(10.0, self.remaining())))
        try:
            conn.request("GET", self.prefix + path, headers={k: v for k, v in self.headers.items()
                                                           if k != "Content-Type"})
            resp = conn.getresponse()
            body = resp.read(1 << 20)
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            return json.loads(body)
        finally:
            conn.close()

    def body(self, prompt):
        a = self.args
        b = {"max_tokens": a.max_tokens, "temperature": a.temperature, "stream": True,
             "stream_options": {"include_usage": True}}
        if a.model:
            b["model"] = a.model
        if a.endpoint == "chat":
            b["messages"] = [{"role": "user", "content": prompt}]
        else:
            b["prompt"] = prompt
        if a.ignore_eos:
            b["ignore_eos"] = True
        if a.extra_body:
            b.update(a.extra_body)
        return json.dumps(b).encode()

    def abort_all(self):
        self.aborted.set()
        with self.lock:
            conns = list(self.open_conns)
        for c in conns:
            try:
                if c.sock is not None:
                    c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def run_one(self, prompt):
        """Send one streamed request; return a result dict (timings in seconds)."""
        path = self.prefix + ("/v1/chat/completions" if self.args.endpoint == "chat" else "/v1/completions")
        res = {"ok": False, "error": None, "streamed": True, "ttft": None, "e2e": None, "itl": [], "chunks": 0,
               "output_tokens": 0, "prompt_tokens": None, "usage": False, "finish_reason": None,
               "text_chars": 0}
        data = self.body(prompt)
        st = time.monotonic()
        if self.remaining() <= 0:
            res["error"] = "time limit"
            return res
        conn = http.client.HTTPConnection(self.host, self.port, timeout=max(0.05, self.remaining()))
        with self.lock:
            self.open_conns.add(conn)
        last = None
        try:
            conn.request("POST", path, body=data, headers=self.headers)
            resp = conn.getresponse()
            if resp.status != 200:
                err = resp.read(2000).decode("utf-8", "replace").strip()
                res["error"] = f"HTTP {resp.status}: {err[:300]}"
                return res
            ctype = resp.getheader("Content-Type", "")
            if "text/event-stream" not in ctype:
                # The server ignored stream=true: one JSON body; TTFT = E2E.
                res["streamed"] = False
                obj = json.loads(resp.read(64 << 20))
                now = time.monotonic()
                text = self._text(obj, streamed=False)
                if text:
                    res["ttft"] = now - st
                    res["chunks"] = 1
                    res["text_chars"] = len(text)
                self._take_usage(obj, res)
                self._take_finish(obj, res)
                res["e2e"] = now - st
                res["output_tokens"] = res["output_tokens"] if res["usage"] else res["chunks"]
                res["ok"] = res["ttft"] is not None or res["usage"]
                if res["ok"]:
                    res["ttft"] = res["e2e"]
                else:
                    res["error"] = "empty response"
                return res
            done = False
            event_data = []
            while not done:
                left = self.remaining()
                if left <= 0:
                    raise TimeoutError("time limit")
                if conn.sock is not None:
                    conn.sock.settimeout(left)
                line = resp.readline(1 << 20)
                if not line:
                    break  # stream closed without [DONE]
                line = line.rstrip(b"\r\n")
                if line:
                    if line.startswith(b"data:"):
                        event_data.append(line[5:].lstrip(b" "))
                    continue  # comments (':'), event:, id:, retry: lines
                if not event_data:
                    continue
                payload = b"\n".join(event_data)
                event_data = []
                if payload.strip() == b"[DONE]":
                    done = True
                    break
                now = time.monotonic()
                obj = json.loads(payload)
                if isinstance(obj, dict) and obj.get("error"):
                    raise RuntimeError(f"server error in stream: {json.dumps(obj['error'])[:300]}")
                text = self._text(obj, streamed=True)
                if text:
                    if res["ttft"] is None:
                        res["ttft"] = now - st
                    else:
                        res["itl"].append(now - last)
                    last = now
                    res["chunks"] += 1
                    res["text_chars"] += len(text)
                self._take_usage(obj, res)
                self._take_finish(obj, res)
            if event_data:  # a final event without its blank line
                payload = b"\n".join(event_data)
                if payload.strip() != b"[DONE]":
                    obj = json.loads(payload)
                    self._take_usage(obj, res)
            res["e2e"] = time.monotonic() - st
            if not res["usage"]:
                res["output_tokens"] = res["chunks"]
            if not done and (self.aborted.is_set() or self.remaining() <= 0):
                res["error"] = "time limit"
            elif not done and res["finish_reason"] is None and not res["usage"]:
                res["error"] = "stream closed before [DONE] or a finish_reason"
            elif res["ttft"] is None:
                res["error"] = "no content in stream"
            else:
                res["ok"] = True
            return res
        except (TimeoutError, socket.timeout):
            res["error"] = "time limit"
            return res
        except (OSError, http.client.HTTPException, ValueError, RuntimeError) as e:
            res["error"] = "time limit" if self.remaining() <= 0 else f"{type(e).__name__}: {e}"
            return res
        finally:
            with self.lock:
                self.open_conns.discard(conn)
            conn.close()

    def _text(self, obj, streamed):
        if not isinstance(obj, dict):
            return ""
        choices = obj.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return ""
        ch = choices[0]
        if self.args.endpoint == "chat":
            part = ch.get("delta" if streamed else "message") or {}
            text = part.get("content") if isinstance(part, dict) else None
        else:
            text = ch.get("text")
        return text if isinstance(text, str) else ""

    @staticmethod
    def _take_usage(obj, res):
        u = obj.get("usage") if isinstance(obj, dict) else None
        if isinstance(u, dict) and isinstance(u.get("completion_tokens"), int):
            res["usage"] = True
            res["output_tokens"] = u["completion_tokens"]
            if isinstance(u.get("prompt_tokens"), int):
                res["prompt_tokens"] = u["prompt_tokens"]

    @staticmethod
    def _take_finish(obj, res):
        if not isinstance(obj, dict):
            return
        for ch in obj.get("choices") or []:
            if isinstance(ch, dict) and ch.get("finish_reason"):
                res["finish_reason"] = ch["finish_reason"]


def main():
    ap = argparse.ArgumentParser(
        description="Serving benchmark (vLLM benchmark_serving style) for an OpenAI-compatible "
                    "server at a loopback address.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8080",
                    help="server root (http, loopback only: 127.x, localhost, [::1]); a trailing /v1 is accepted")
    ap.add_argument("--endpoint", choices=("completions", "chat"), default="completions",
                    help="/v1/completions with `prompt`, or /v1/chat/completions with one user message")
    ap.add_argument("--model", default=None,
                    help="model field; default: the first id of GET /v1/models, omitted if that fails")
    ap.add_argument("--api-key", default=None, help="sent as `Authorization: Bearer KEY`")
    ap.add_argument("--num-prompts", type=int, default=32, help=f"requests in the timed run (at most {MAX_PROMPTS})")
    ap.add_argument("--concurrency", type=int, default=8, help=f"most requests in flight at once (at most {MAX_CONCURRENCY})")
    ap.add_argument("--request-rate", type=float, default=float("inf"),
                    help="mean requests/s (Poisson arrivals from --seed); inf = send as fast as concurrency allows")
    ap.add_argument("--max-tokens", type=int, default=64, help="max_tokens of every request")
    ap.add_argument("--prompt-words", default="16:128",
                    help="MIN:MAX words per prompt, uniform, deterministic from --seed")
    ap.add_argument("--seed", type=int, default=0, help="seed of the prompts and arrival times; use a new one for each run against the same server "
                         "(a prompt cache would answer repeated prompts)")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature sent")
    ap.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                    help="do not send `ignore_eos: true` (for servers that reject unknown fields)")
    ap.add_argument("--extra-body", default=None, help="JSON object merged into every request body")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed requests sent one at a time before the run (also checks the server answers)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="total time limit in seconds (warm-up included); the run stops by itself")
    ap.add_argument("--percentiles", default="99", help="comma-separated percentiles to report")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--per-request", action="store_true", help="with --json: include one record per request")
    args = ap.parse_args()

    host, port, prefix = parse_base_url(args.base_url)
    if not 1 <= args.num_prompts <= MAX_PROMPTS:
        die(f"--num-prompts must be in 1..{MAX_PROMPTS}")
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        die(f"--concurrency must be in 1..{MAX_CONCURRENCY}")
    if args.max_tokens < 1:
        die("--max-tokens must be >= 1")
    if not 0 < args.timeout <= 86400:
        die("--timeout must be in (0, 86400]")
    if args.warmup < 0 or args.warmup > 100:
        die("--warmup must be in 0..100")
    if not args.request_rate > 0:
        die("--request-rate must be > 0")
    try:
        pcts = [float(p) for p in args.percentiles.split(",") if p.strip()]
    except ValueError:
        die("--percentiles wants numbers like 50,90,99")
    if any(not 0 <= p <= 100 for p in pcts):
        die("--percentiles must lie in 0..100")
    if args.extra_body:
        try:
            args.extra_body = json.loads(args.extra_body)
        except ValueError as e:
            die(f"--extra-body is not JSON: {e}")
        if not isinstance(args.extra_body, dict):
            die("--extra-body must be a JSON object")
    lo, hi = parse_range(args.prompt_words)

    t_begin = time.monotonic()
    deadline = t_begin + args.timeout
    client = Client(args, host, port, prefix, deadline)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    if args.model is None:
        try:
            models = client.get_json("/v1/models")
            ids = [m.get("id") for m in models.get("data", []) if isinstance(m, dict)]
            if ids and isinstance(ids[0], str):
                args.model = ids[0]
        except (OSError, http.client.HTTPException, ValueError, RuntimeError, AttributeError):
            pass

    prompts = make_prompts(args.num_prompts, lo, hi, args.seed)
    log(f"bench_serve: {args.num_prompts} prompts ({lo}-{hi} words, seed {args.seed}), "
        f"concurrency {args.concurrency}, max_tokens {args.max_tokens}, endpoint {args.endpoint}, "
        f"model {args.model!r}, server {host}:{port}{prefix}")

    warm = make_prompts(args.warmup, lo, hi, args.seed + 1_000_003)
    for i, p in enumerate(warm):
        r = client.run_one(p)
        if not r["ok"]:
            log(f"bench_serve: warm-up request {i + 1} failed: {r['error']}")
            if args.json:
                print(json.dumps({"error": f"warm-up failed: {r['error']}"}))
            return 1

    # Dispatch: indices go into a queue (at --request-rate), --concurrency workers take them.
    work = queue.Queue()
    results = [None] * args.num_prompts
    stop = threading.Event()
    rng = random.Random(args.seed + 7)

    def dispatcher():
        for i in range(args.num_prompts):
            if i and math.isfinite(args.request_rate):
                delay = rng.expovariate(args.request_rate)
                if stop.wait(min(delay, max(0.0, client.remaining()))):
                    break
            if stop.is_set() or client.remaining() <= 0:
                break
            work.put(i)
        for _ in range(args.concurrency):
            work.put(None)

    def worker():
        while True:
            i = work.get()
            if i is None or stop.is_set() or client.remaining() <= 0:
                return
            results[i] = client.run_one(prompts[i])

    bench_start = time.monotonic()
    threads = [threading.Thread(target=dispatcher, daemon=True)]
    threads += [threading.Thread(target=worker, daemon=True) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, client.remaining()))
    duration = time.monotonic() - bench_start
    hit_limit = any(t.is_alive() for t in threads)
    if hit_limit:
        stop.set()
        client.abort_all()
        for t in threads:
            t.join(2.0)
    snapshot = list(results)
    done = [r for r in snapshot if r is not None]
    ok = [r for r in done if r["ok"]]
    failed = [r for r in done if not r["ok"]]
    not_sent = args.num_prompts - len(done)
    hit_limit = hit_limit or (not_sent > 0 and client.remaining() <= 0)
    if duration <= 0:
        duration = float("nan")

    out_tok = sum(r["output_tokens"] for r in ok)
    in_known = [r["prompt_tokens"] for r in ok if r["prompt_tokens"] is not None]
    in_tok = sum(in_known) if in_known and len(in_known) == len(ok) else None
    ttft = [r["ttft"] for r in ok]
    e2e = [r["e2e"] for r in ok]
    tpot = [(r["e2e"] - r["ttft"]) / (r["output_tokens"] - 1) for r in ok if r["output_tokens"] > 1]
    itl = [x for r in ok for x in r["itl"]]
    short = sum(1 for r in ok if r["output_tokens"] < args.max_tokens)
    with_usage = sum(1 for r in ok if r["usage"])
    not_streamed = sum(1 for r in ok if not r["streamed"])
    errors = {}
    for r in failed:
        errors[r["error"]] = errors.get(r["error"], 0) + 1

    summary = {
        "base_url": f"http://{host}:{port}{prefix}", "endpoint": args.endpoint, "model": args.model,
        "num_prompts": args.num_prompts, "concurrency": args.concurrency,
        "request_rate": args.request_rate if math.isfinite(args.request_rate) else "inf",
        "max_tokens": args.max_tokens, "prompt_words": [lo, hi], "seed": args.seed,
        "completed": len(ok), "failed": len(failed), "not_sent": not_sent,
        "hit_time_limit": hit_limit, "errors": errors,
        "duration_s": duration,
        "total_input_tokens": in_tok, "total_output_tokens": out_tok,
        "requests_with_usage": with_usage, "requests_not_streamed": not_streamed, "requests_short_of_max_tokens": short,
        "request_throughput": len(ok) / duration,
        "output_throughput": out_tok / duration,
        "total_token_throughput": (in_tok + out_tok) / duration if in_tok is not None else None,
        "ttft_ms": stats_ms(ttft, pcts), "tpot_ms": stats_ms(tpot, pcts),
        "itl_ms": stats_ms(itl, pcts), "e2el_ms": stats_ms(e2e, pcts),
    }
    if args.per_request:
        summary["requests"] = [
            None if r is None else {k: r[k] for k in ("ok", "error", "ttft", "e2e", "output_tokens",
                                                       "prompt_tokens", "chunks", "finish_reason")}
            for r in snapshot]

    if args.json:
        print(json.dumps(_nan_to_none(summary), indent=2))
    else:
        print_table(summary, pcts, args)
    return 0 if len(ok) == args.num_prompts else 1


def _nan_to_none(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    return obj


def print_table(s, pcts, args):
    def row(name, val, fmt="{:<10.2f}"):
        if val is None or (isinstance(val, float) and not math.isfinite(val)):
            print("{:<40} {:<10}".format(name, "n/a").rstrip())
        elif isinstance(val, int):
            print("{:<40} {:<10}".format(name, val).rstrip())
        else:
            print(("{:<40} " + fmt).format(name, val).rstrip())

    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    row("Successful requests:", s["completed"])
    row("Failed requests:", s["failed"])
    if s["not_sent"]:
        row("Requests not sent (time limit):", s["not_sent"])
    row("Maximum request concurrency:", s["concurrency"])
    row("Benchmark duration (s):", s["duration_s"])
    row("Total input tokens:", s["total_input_tokens"])
    row("Total generated tokens:", s["total_output_tokens"])
    row("Request throughput (req/s):", s["request_throughput"])
    row("Output token throughput (tok/s):", s["output_throughput"])
    row("Total Token throughput (tok/s):", s["total_token_throughput"])
    for key, title, short in (("ttft_ms", "Time to First Token", "TTFT"),
                              ("tpot_ms", "Time per Output Token (excl. 1st token)", "TPOT"),
                              ("itl_ms", "Inter-token Latency", "ITL"),
                              ("e2el_ms", "End-to-end Latency", "E2EL")):
        print("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        st = s[key]
        row(f"Mean {short} (ms):", st["mean"])
        row(f"Median {short} (ms):", st["median"])
        for p in pcts:
            row(f"P{p:g} {short} (ms):", st[f"p{p:g}"])
    print("=" * 50)
    notes = []
    if s["completed"] and s["requests_with_usage"] < s["completed"]:
        notes.append(f"{s['completed'] - s['requests_with_usage']} request(s) without usage: "
                     "output tokens counted as text chunks")
    if s["requests_short_of_max_tokens"]:
        notes.append(f"{s['requests_short_of_max_tokens']} request(s) stopped before "
                     f"--max-tokens {args.max_tokens}")
    if s["requests_not_streamed"]:
        notes.append(f"{s['requests_not_streamed']} response(s) were not streamed: TTFT = E2E for them")
    if s["hit_time_limit"]:
        notes.append(f"stopped at the --timeout of {args.timeout:g} s")
    for err, n in s["errors"].items():
        notes.append(f"{n} x {err}")
    for n in notes:
        print(f"note: {n}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
