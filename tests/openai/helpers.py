"""Assertions shared by the test modules."""

from __future__ import annotations

import json

import httpx

REQUEST_TIMEOUT_S = 60.0


def assert_error_body(r: httpx.Response, status: int, *mentions: str) -> dict:
    """`r` is an OpenAI-style error with `status`; its message names one of `mentions`
    (case-insensitive) when any are given. Returns the `error` object."""
    assert r.status_code == status, f"expected HTTP {status}, got {r.status_code}: {r.text[:500]}"
    try:
        body = r.json()
    except json.JSONDecodeError:
        raise AssertionError(f"error body is not JSON: {r.text[:500]!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    for key in ("message", "type", "param", "code"):
        assert key in err, f"error object lacks {key!r}: {body}"
    assert isinstance(err["message"], str) and err["message"], body
    assert isinstance(err["type"], str) and err["type"], body
    if mentions:
        msg = err["message"].lower()
        assert any(m.lower() in msg for m in mentions), (
            f"error message should name one of {mentions}: {err['message']!r}"
        )
    return err


def assert_healthy(srv) -> None:
    """The server process is still running and /health answers 200."""
    assert srv.alive(), f"lume serve exited ({srv.proc.returncode})"
    r = httpx.get(f"{srv.url}/health", timeout=REQUEST_TIMEOUT_S)
    assert r.status_code == 200, f"/health after the error: {r.status_code} {r.text[:300]}"
