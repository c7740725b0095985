"""Processes of the gateway suite: `lume serve` replicas and the LiteLLM proxy.

Every process binds 127.0.0.1 on a free port, logs to target/gateway-tests/<name>.log, is
started in a session of its own and is killed (its whole process group) at teardown, also when
a test fails. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / "target" / "gateway-tests"
HOST = "127.0.0.1"
MODEL = "smollm2-135m"

# Every process started here, so teardown can end the ones a test left running.
RUNNING: list["Proc"] = []


def lume_bin() -> Path:
    p = Path(os.environ.get("LUME_BIN", "target/release/lume"))
    return p if p.is_absolute() else REPO_ROOT / p


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"(no log: {e})"


@dataclass
class Proc:
    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    log_path: Path = Path()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def spawn(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}.log"
        log = open(self.log_path, "ab")
        log.write(("\n$ " + " ".join(self.cmd) + "\n").encode())
        log.flush()
        env = dict(os.environ)
        env.pop("LUME_API_KEY", None)
        env.update(self.env)
        self.proc = subprocess.Popen(
            self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT, env=env, start_new_session=True,
        )
        log.close()
        if self not in RUNNING:
            RUNNING.append(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http(self, path: str, timeout_s: float, ok=(200,)) -> None:
        """Polls GET `path` until it answers a status in `ok` (bounded by `timeout_s`)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        with httpx.Client(timeout=5.0) as c:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}) before {path} answered\n"
                        f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
                    )
                try:
                    r = c.get(self.url + path)
                    if r.status_code in ok:
                        return
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.TransportError as e:
                    last = repr(e)
                time.sleep(0.05)
        raise RuntimeError(
            f"{self.name}: {path} did not answer {ok} within {timeout_s:.0f} s (last: {last})\n"
            f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends `sig` to the process group and waits (bounded) for the process to end."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self in RUNNING:
            RUNNING.remove(self)

    def stop(self) -> None:
        """SIGTERM (lume drains), SIGKILL if it does not end in time."""
        self.kill(signal.SIGTERM)


def replica(name: str, port: int | None = None, load_delay_ms: int = 0) -> Proc:
    """A `lume serve` replica of smollm2-135m (1 thread, 2 slots: three fit on 2 cores)."""
    port = port or free_port()
    cmd = [
        str(lume_bin()), "serve", "-m", MODEL, "--host", HOST, "--port", str(port),
        "--parallel", "2", "--ctx-size", "512", "--threads", "1",
    ]
    env = {"LUME_TEST_LOAD_DELAY_MS": str(load_delay_ms)} if load_delay_ms else {}
    return Proc(name=name, cmd=cmd, port=port, env=env)


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """Prometheus text -> {(name, labels-as-written): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m:
            out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return out


def http_count(metrics: dict, route: str, status: int) -> int:
    key = ("lume_http_requests_total", f'{{route="{route}",status="{status}"}}')
    return int(metrics.get(key, 0))


def scrape(p: Proc) -> dict:
    r = httpx.get(p.url + "/metrics", timeout=10.0)
    r.raise_for_status()
    return parse_metrics(r.text)
