"""Fixtures for the `lume serve` OpenAI-compatibility suite.

Two servers, both on 127.0.0.1 with a free port picked at start:

* `server`: `lume serve -m smollm2-135m --parallel 4 --ctx-size 2048 --threads 2
  --api-key test-key-123`, started once per session (first test that uses it).
* `base_server`: `lume serve -m gemma3-270m` (a base model without a chat template), no key,
  started only when a test asks for it.
* `qwen_server`, `embed_server`, `rerank_server`: one model each, started on demand;
  test_multi_model.py starts its own servers without `-m` (every cached model by name).

The binary comes from env `LUME_BIN` (default `target/release/lume` under the repo root).
Server output goes to `target/openai-tests/<name>.log`; its tail is attached to every failing
test's report (and to the error when a server does not come up).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / "target" / "openai-tests"

API_KEY = "test-key-123"
MODEL = "smollm2-135m"
BASE_MODEL = "gemma3-270m"
N_PARALLEL = 4
CTX_SIZE = 2048

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
# Per-request timeout for every HTTP call the suite makes (the models are tiny and max_tokens
# small; a generous limit only matters when the server hangs).
REQUEST_TIMEOUT_S = 60.0

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def lume_bin() -> Path:
    p = Path(os.environ.get("LUME_BIN", "target/release/lume"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n_lines: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(lines[-n_lines:])


@dataclass
class Server:
    name: str
    args: list[str]
    api_key: str | None = None
    # Extra environment variables for the server process (e.g. LUME_CACHE_DIR).
    env: dict[str, str] = field(default_factory=dict)
    url: str = ""
    port: int = 0
    log_path: Path = Path()
    proc: subprocess.Popen | None = None
    # Every non-200 /health answer seen while waiting for the server: (status, body text).
    startup_health: list[tuple[int, str]] = field(default_factory=list)
    exit_note: str = ""

    def start(self) -> None:
        binary = lume_bin()
        if not binary.exists():
            raise RuntimeError(
                f"lume binary not found at {binary} (set LUME_BIN or run `cargo build --release`)"
            )
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = LOG_DIR / f"{self.name}.log"
        cmd = [str(binary), "serve", *self.args, "--host", HOST, "--port", str(self.port)]
        log = open(self.log_path, "wb")
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        env = dict(os.environ)
        env.pop("LUME_API_KEY", None)  # only the keys given on the command line
        env.update(self.env)
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
            env=env,
        )
        log.close()
        _RUNNING.append(self)
        try:
            self._wait_healthy()
        except Exception:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no answer yet"
        with httpx.Client(timeout=5.0) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name}: lume serve exited with status {self.proc.returncode} "
                        f"before /health answered 200\n--- {self.log_path} (tail) ---\n"
                        f"{log_tail(self.log_path)}"
                    )
                try:
                    r = c.get(f"{self.url}/health")
                    if r.status_code == 200:
                        return
                    self.startup_health.append((r.status_code, r.text))
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.TransportError as e:  # not listening yet
                    last = repr(e)
                time.sleep(0.005)
        raise RuntimeError(
            f"{self.name}: /health did not answer 200 within {STARTUP_TIMEOUT_S:.0f} s "
            f"(last: {last})\n--- {self.log_path} (tail) ---\n{log_tail(self.log_path)}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                self.exit_note = f"exited with status {self.proc.returncode} after SIGTERM"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.exit_note = f"did not exit within {STOP_TIMEOUT_S:.0f} s of SIGTERM: killed"
                print(f"\n[openai-tests] {self.name}: {self.exit_note}", file=sys.stderr)
        else:
            self.exit_note = f"had already exited with status {self.proc.returncode}"
        if self in _RUNNING:
            _RUNNING.remove(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


_RUNNING: list[Server] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in list(_RUNNING):
            state = "running" if s.alive() else f"EXITED ({s.proc.returncode})"
            rep.sections.append(
                (f"lume serve {s.name} log tail [{state}] {s.log_path}", log_tail(s.log_path, 40))
            )


def unkeyed_client(s: Server) -> openai.OpenAI:
    """The official client for server `s` (no key configured there)."""
    return openai.OpenAI(
        base_url=f"{s.url}/v1", api_key="unused", timeout=REQUEST_TIMEOUT_S, max_retries=0,
    )


def running(name: str, args: list[str], env: dict[str, str] | None = None):
    """A started `Server` for a session fixture (stopped when the fixture ends)."""
    s = Server(name=name, args=args, env=env or {})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def server():
    s = Server(
        name="smollm2",
        args=[
            "-m", MODEL,
            "--parallel", str(N_PARALLEL),
            "--ctx-size", str(CTX_SIZE),
            "--threads", "2",
            "--api-key", API_KEY,
        ],
        api_key=API_KEY,
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def base_server():
    yield from running("gemma3", ["-m", BASE_MODEL, "--threads", "2", "--ctx-size", "1024"])


@pytest.fixture(scope="session")
def url(server) -> str:
    return server.url


@pytest.fixture(scope="session")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=API_KEY, timeout=REQUEST_TIMEOUT_S, max_retries=0
    )


@pytest.fixture(scope="session")
def http(server):
    """httpx client for the main server, key sent as Bearer."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="session")
def anon(server):
    """httpx client for the main server without any key."""
    with httpx.Client(base_url=server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="session")
def base_client(base_server) -> openai.OpenAI:
    return unkeyed_client(base_server)


@pytest.fixture(scope="session")
def base_http(base_server):
    with httpx.Client(base_url=base_server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


TOOL_MODEL = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="session")
def qwen_server():
    """qwen2.5-coder-0.5b: a chat template with a tools section (structured output, tools)."""
    yield from running(
        "qwen2.5", ["-m", TOOL_MODEL, "--parallel", "4", "--ctx-size", "4096", "--threads", "2"])


@pytest.fixture(scope="session")
def qwen_client(qwen_server) -> openai.OpenAI:
    return unkeyed_client(qwen_server)


@pytest.fixture(scope="session")
def qwen_http(qwen_server):
    with httpx.Client(base_url=qwen_server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


EMBED_MODEL = "minilm-l6"


@pytest.fixture(scope="session")
def embed_server():
    """all-MiniLM-L6-v2 (an encoder: /v1/embeddings only)."""
    yield from running("minilm", ["-m", EMBED_MODEL, "--threads", "2"])


@pytest.fixture(scope="session")
def embed_client(embed_server) -> openai.OpenAI:
    return unkeyed_client(embed_server)


@pytest.fixture(scope="session")
def embed_http(embed_server):
    with httpx.Client(base_url=embed_server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="session")
def rerank_server():
    """The tiny random-weight BertForSequenceClassification of testdata/encoders/rerank."""
    yield from running(
        "rerank", ["-m", str(REPO_ROOT / "testdata" / "encoders" / "rerank"), "--threads", "2"])


@pytest.fixture(scope="session")
def rerank_http(rerank_server):
    with httpx.Client(base_url=rerank_server.url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c
