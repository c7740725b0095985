"""Fixtures of the gateway suite: three `lume serve` replicas behind LiteLLM's proxy.

The proxy runs deploy/litellm.yaml as committed, with only the replicas' ports and the master
key replaced (target/gateway-tests/litellm.yaml). Figures of the run are collected in `FIGURES`,
written to target/gateway-tests/figures.json and printed at the end of the session.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

import procs
from procs import LOG_DIR, REPO_ROOT, Proc, free_port, log_tail, replica

MASTER_KEY = "sk-gateway-test-0123456789"
MODEL_NAME = "lume"  # the model name deploy/litellm.yaml serves
PROXY_STARTUP_S = 180.0
REPLICA_STARTUP_S = 60.0

FIGURES: dict = {}


def proxy_config(ports: list[int]) -> Path:
    """deploy/litellm.yaml with the replicas on `ports` and the test's master key."""
    cfg = yaml.safe_load((REPO_ROOT / "deploy" / "litellm.yaml").read_text())
    entries = cfg["model_list"]
    assert len(entries) == len(ports), "deploy/litellm.yaml should list three replicas"
    for e, port in zip(entries, ports):
        assert e["model_name"] == MODEL_NAME
        e["litellm_params"]["api_base"] = f"http://{procs.HOST}:{port}/v1"
    cfg["general_settings"]["master_key"] = MASTER_KEY
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    out = LOG_DIR / "litellm.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def litellm_bin() -> Path:
    p = Path(sys.executable).parent / "litellm"
    if not p.exists():
        raise RuntimeError(f"{p} missing: run tests/gateway/run.sh (it installs litellm[proxy])")
    return p


@pytest.fixture(scope="session")
def cluster():
    """{'replicas': [a, b, c], 'proxy': Proc, 'url': ...}; everything killed at the end."""
    reps = [replica(f"replica-{n}") for n in "abc"]
    proxy_port = free_port()
    proxy = Proc(
        name="litellm",
        cmd=[
            str(litellm_bin()), "--config", str(proxy_config([r.port for r in reps])),
            "--host", procs.HOST, "--port", str(proxy_port), "--num_workers", "1",
        ],
        port=proxy_port,
        env={
            # Offline: the bundled price list, no telemetry.
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY": "False",
            "LITELLM_LOG": "WARNING",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
        },
    )
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "OPENAI_API_KEY",
              "DATABASE_URL"):  # no database: the master key is the only key
        os.environ.pop(k, None)
    try:
        for r in reps:
            r.spawn()
        proxy.spawn()
        for r in reps:
            r.wait_http("/health", REPLICA_STARTUP_S)
        proxy.wait_http("/health/liveliness", PROXY_STARTUP_S)
        yield {"replicas": reps, "proxy": proxy, "url": proxy.url}
    finally:
        for p in list(procs.RUNNING):
            p.kill()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for p in list(procs.RUNNING):
            state = "running" if p.alive() else f"EXITED ({p.proc.returncode})"
            rep.sections.append((f"{p.name} log tail [{state}] {p.log_path}",
                                 log_tail(p.log_path, 30)))


def pytest_terminal_summary(terminalreporter):
    if not FIGURES:
        return
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
    terminalreporter.section("gateway figures (target/gateway-tests/figures.json)")
    for k, v in FIGURES.items():
        terminalreporter.write_line(f"{k}: {json.dumps(v)}")
