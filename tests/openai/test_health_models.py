"""/health (ready and loading) and the model routes: list, retrieve, model-name resolution."""

import json

import openai
import pytest

from conftest import MODEL
from helpers import assert_error_body


def test_health_ok_without_key(server, anon):
    r = anon.get("/health")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok"}


def test_health_while_loading_is_503(server):
    # The fixture polled /health every 5 ms from the moment the process started; every non-200
    # answer it got (the server may finish loading a 98 MB model before the first poll) must be
    # the specified loading error.
    expected = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    for status, text in server.startup_health:
        assert status == 503, (status, text)
        assert json.loads(text) == expected, text


def test_models_list(client):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids, ids
    m = next(m for m in models.data if m.id == MODEL)
    assert m.object == "model"


def test_models_list_raw(http):
    r = http.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert any(m["id"] == MODEL for m in body["data"]), body


def test_model_retrieve(client, http):
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL
    r = http.get(f"/v1/models/{MODEL}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == MODEL


def test_model_retrieve_unknown_is_404(http):
    r = http.get("/v1/models/no-such-model")
    err = assert_error_body(r, 404, MODEL, "no-such-model")
    assert err["code"] == "model_not_found", err


@pytest.mark.parametrize("name", [MODEL, "", "default"])
def test_model_names_served(client, name):
    r = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0
    )
    assert r.choices[0].message.content is not None
    assert r.model  # the server reports which model served it


def test_unknown_model_is_404(client, http, server):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
    assert ei.value.status_code == 404
    r = http.post(
        "/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
    )
    err = assert_error_body(r, 404, MODEL)
    assert err["code"] == "model_not_found", err
    r = http.post("/v1/completions", json={"model": "gpt-4o", "prompt": "Hi", "max_tokens": 4})
    err = assert_error_body(r, 404, MODEL)
    assert err["code"] == "model_not_found", err
