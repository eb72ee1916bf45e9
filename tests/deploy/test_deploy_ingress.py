"""The public entry point as ingress-nginx serves it: proxy timeouts against the API's longest long-poll,
which paths the Ingresses publish (operators' endpoints stay off it), and user annotations merged over the
chart's without duplicate keys."""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python as helm
import pytest
from jobs_api import openapi

from deploy.manifests import CHART, NAMESPACE, RELEASE, Obj, StrictLoaderError, find, one, parse_documents, render_chart

TIMEOUTS = ("nginx.ingress.kubernetes.io/proxy-read-timeout", "nginx.ingress.kubernetes.io/proxy-send-timeout")
#: ingress-nginx's own proxy read/send timeout when no annotation sets one.
NGINX_DEFAULT_TIMEOUT = 60
#: an answer to a long-poll leaves the API a little after the wait ends (a Redis round trip, a loaded node)
ANSWER_MARGIN_SECONDS = 5
DENY_ALL = {"0.0.0.0/0", "::/0"}


def longest_wait_the_api_accepts() -> float:
    """The largest ``?wait=`` any operation of the API's OpenAPI document allows (the document is built
    from the same constant the views validate the parameter with)."""
    waits = [p["schema"]["maximum"] for item in openapi.build_spec()["paths"].values()
             for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])
             if p.get("name") == "wait" and p.get("in") == "query"]
    assert waits, "no ?wait= parameter in the OpenAPI document"
    assert max(waits) == openapi.MAX_WAIT_SECONDS
    return float(max(waits))


def timeout_violations(ingress: Obj) -> list[str]:
    """Proxy timeouts that would cut a long-poll the API accepts short (504, then a retry on another pod)."""
    annotations = ingress["metadata"].get("annotations", {})
    longest = longest_wait_the_api_accepts()
    out = []
    for key in TIMEOUTS:
        value = float(annotations.get(key, NGINX_DEFAULT_TIMEOUT))
        if not value >= longest + ANSWER_MARGIN_SECONDS:
            out.append(f"{ingress['metadata']['name']}: {key} {value:g} s is not above the longest wait "
                       f"{longest:g} s + {ANSWER_MARGIN_SECONDS} s")
    return out


def _serving(objects: list[Obj]) -> list[Obj]:
    """Ingresses that let clients through (not the deny-all one for operators' paths)."""
    return [i for i in find(objects, "Ingress") if not _denies_all(i)]


def _denies_all(ingress: Obj) -> bool:
    denied = ingress["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/denylist-source-range", "")
    return {c.strip() for c in denied.split(",")} >= DENY_ALL


def test_proxy_timeouts_outlast_the_longest_wait(all_sources: dict[str, list[Obj]]) -> None:
    """Issue 10 #1: ingress-nginx's 60 s default answered `?wait=60` polls 504."""
    problems = [f"{source}: {v}" for source, objects in all_sources.items()
                for ingress in _serving(objects) for v in timeout_violations(ingress)]
    assert problems == []
    assert {s for s, objects in all_sources.items() if _serving(objects)} >= {
        "helm:defaults", "helm:ci-kind", "kustomize:dev", "kustomize:prod"}


def test_timeout_check_catches_the_nginx_default(rendered: dict[str, list[Obj]]) -> None:
    ingress = copy.deepcopy(one(rendered["defaults"], "Ingress", "api"))
    assert timeout_violations(ingress) == []
    for key in TIMEOUTS:
        ingress["metadata"]["annotations"].pop(key)
    assert len(timeout_violations(ingress)) == 2


# --- which paths the Ingress publishes ------------------------------------------------------------------


def route(objects: list[Obj], host: str, path: str) -> Obj | None:
    """The Ingress ingress-nginx sends ``host``+``path`` to: an Exact match first, else the longest Prefix
    match (element-wise on ``/``) over every Ingress of the host, as the Ingress API specifies."""
    best: tuple[int, Obj] | None = None
    for ingress in find(objects, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host") != host:
                continue
            for p in rule["http"]["paths"]:
                if p["pathType"] == "Exact" and p["path"] == path:
                    return ingress
                prefix = p["path"].rstrip("/")
                if p["pathType"] == "Prefix" and (path == prefix or path.startswith(prefix + "/") or prefix == ""):
                    length = len(prefix)
                    if best is None or length > best[0]:
                        best = (length, ingress)
    return best[1] if best else None


#: Operators' endpoints (queue sizes and task names in /metrics, the task catalogue in /docs and the
#: OpenAPI document): on the Service only, unless ingress.exposeOps.
OPS_PATHS = ("/metrics", "/docs", "/docs/init.js", "/docs/assets/x.css", "/openapi.json")


def public_paths() -> list[str]:
    """A concrete path for every route of the API that is not an operators' endpoint."""
    from jobs_api.app import create_app

    paths = set()
    for rule in create_app().url_map.iter_rules():
        path = re.sub(r"<[^>]+>", "x", rule.rule)
        if not path.startswith(("/metrics", "/docs", "/openapi.json", "/static")):
            paths.add(path)
    return sorted(paths)


def ops_exposure(objects: list[Obj]) -> tuple[list[str], list[str]]:
    """(operators' paths a client reaches through the Ingress, API paths a client cannot reach)."""
    hosts = {r["host"] for i in find(objects, "Ingress") for r in i["spec"]["rules"]}
    exposed, blocked = [], []
    for host in hosts:
        for path in OPS_PATHS:
            target = route(objects, host, path)
            if target is not None and not _denies_all(target):
                exposed.append(f"{host}{path}")
        for path in public_paths():
            target = route(objects, host, path)
            if target is None or _denies_all(target):
                blocked.append(f"{host}{path}")
    return exposed, blocked


def test_ops_endpoints_are_not_published_by_default(all_sources: dict[str, list[Obj]]) -> None:
    """Issue 10 #5: the `/` rule published /metrics and /docs to the internet."""
    with_ingress = [s for s, objects in all_sources.items() if find(objects, "Ingress")]
    assert {"helm:defaults", "helm:ingress-tls", "kustomize:dev", "kustomize:prod"} <= set(with_ingress)
    for source in with_ingress:
        assert ops_exposure(all_sources[source]) == ([], []), source


def test_expose_ops_publishes_them() -> None:
    objects = render_chart({"ingress": {"exposeOps": True}})
    exposed, blocked = ops_exposure(objects)
    assert blocked == [] and len(exposed) == len(OPS_PATHS)
    assert len(find(objects, "Ingress")) == 1


def test_the_routing_model_sees_a_catch_all_rule(rendered: dict[str, list[Obj]]) -> None:
    objects = [o for o in copy.deepcopy(rendered["defaults"]) if component_of(o) != "api-ops"]
    exposed, _ = ops_exposure(objects)
    assert len(exposed) == len(OPS_PATHS)


def component_of(obj: Obj) -> str:
    """The component label."""
    return str(obj["metadata"].get("labels", {}).get("app.kubernetes.io/component", ""))


# --- annotations --------------------------------------------------------------------------------------


def test_user_annotations_replace_the_charts_without_duplicate_keys() -> None:
    """Issue 10 #9: a user proxy-body-size rendered the key twice (helm lint did not flag it; YAML parsers
    keep one of the two silently). The rendered text is parsed strictly: a duplicate key fails."""
    values: dict[str, Any] = {"ingress": {"annotations": {
        "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
        "nginx.ingress.kubernetes.io/proxy-read-timeout": "120",
        "cert-manager.io/cluster-issuer": "letsencrypt",
    }}}
    with helm.Chart.load(str(CHART)) as chart:
        text = chart.render(values, name=RELEASE, namespace=NAMESPACE)["jobs-api/templates/api-ingress.yaml"]
    (ingress,) = parse_documents(text)  # strict: raises on a duplicate key
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "8m"
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "120"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "75"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"


def test_strict_parsing_rejects_duplicate_keys() -> None:
    with pytest.raises(StrictLoaderError, match="proxy-body-size"):
        parse_documents("metadata:\n  annotations:\n    proxy-body-size: 2m\n    proxy-body-size: 8m\n")
