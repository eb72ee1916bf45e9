"""The README's "Deploy to Kubernetes" section, read as a new user would: every command it lists names
things that exist (chart, values, overlays, Secrets, profiles, make targets, files) and the Helm
commands render with exactly the flags shown."""

from __future__ import annotations

import re
import shlex
from typing import Any

import helm_python as helm
import pytest
import yaml

from deploy.manifests import CHART, REPO, build_overlay, overlay_names, render_chart

SECTION_TITLE = "## Deploy to Kubernetes"


def section() -> str:
    text = (REPO / "README.md").read_text()
    assert SECTION_TITLE in text
    body = text.split(SECTION_TITLE, 1)[1]
    return re.split(r"\n## ", body, maxsplit=1)[0]


def commands() -> list[list[str]]:
    """Shell commands of the section's ``sh`` blocks, continuation lines joined, comments dropped, and
    ``a && b`` split into its commands."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", section(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                argv: list[str] = []
                for token in [*shlex.split(line), "&&"]:
                    if token == "&&":
                        out.append(argv)
                        argv = []
                    else:
                        argv.append(token)
    return out


def _flag_values(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == flag]


def _set_values(argv: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in _flag_values(argv, "--set"):
        for key, value in helm.parse_set_string(item).items():
            values = _merge(values, {key: value})
    return values


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_the_section_lists_each_way_to_deploy() -> None:
    tools = {argv[0] for argv in commands()}
    assert {"helm", "kubectl", "skaffold", "kind", "docker", "make"} <= tools


def test_helm_commands_render_as_written() -> None:
    installs = [a for a in commands() if a[:2] in (["helm", "install"], ["helm", "upgrade"])
                and CHART.name in " ".join(a)]
    assert len(installs) >= 2
    created = {(a[a.index("generic") + 1]) for a in commands() if "secret" in a and "generic" in a}
    releases = set()
    for argv in installs:
        positional = [a for a in argv[2:] if not a.startswith("-") and a not in _flag_values(argv, "--set")
                      and a not in _flag_values(argv, "--namespace") and a not in _flag_values(argv, "-f")]
        release, chart = positional[:2]
        assert (REPO / chart).resolve() == CHART
        values: dict[str, Any] = {}
        for path in _flag_values(argv, "-f"):
            values = _merge(values, yaml.safe_load((REPO / path).read_text()))
        values = _merge(values, _set_values(argv))
        namespace = _flag_values(argv, "--namespace")[0]
        objects = render_chart(values, name=release, namespace=namespace)  # raises on bad values
        releases.add(release)
        for secret in (values.get("redis", {}).get("auth", {}).get("existingSecret"),
                       values.get("apiKeys", {}).get("existingSecret")):
            if secret:
                assert secret in created, f"README uses Secret {secret} without creating it"
        assert objects
    for argv in commands():
        if argv[:2] == ["helm", "test"]:
            assert argv[2] in releases


def test_kustomize_commands_and_the_prod_secrets() -> None:
    applied = [a[a.index("-k") + 1] for a in commands() if a[:2] == ["kubectl", "apply"] and "-k" in a]
    assert sorted(p.rsplit("/", 1)[1] for p in applied) == overlay_names()
    created: set[tuple[str, str]] = set()
    for argv in commands():
        if argv[:1] == ["kubectl"] and "generic" in argv:
            name = argv[argv.index("generic") + 1]
            for arg in argv:
                m = re.match(r"--from-(?:literal|file)=([^=]+)=", arg)
                if m:
                    created.add((name, m.group(1)))
    needed = set()
    for obj in build_overlay("prod"):
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.add((ref["name"], ref["key"]))
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                needed.add((volume["secret"]["secretName"], "api-keys"))
    assert needed and needed <= created


def test_files_profiles_and_targets_exist() -> None:
    skaffold = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    profiles = {p["name"] for p in skaffold["profiles"]}
    makefile = (REPO / "Makefile").read_text()
    for argv in commands():
        if argv[:2] == ["docker", "build"]:
            if "-f" in argv:  # else a Dockerfile of the user's own task project
                assert (REPO / argv[argv.index("-f") + 1]).exists() or pytest.fail(f"no {argv}")
            tag = argv[argv.index("-t") + 1]
            assert tag.rpartition(":")[2] not in ("", "latest")
        elif argv[0] == "skaffold":
            assert argv[1] in ("dev", "run")
            for name in _flag_values(argv, "-p")[0].split(","):
                assert name in profiles
        elif argv[0] == "make":
            assert re.search(rf"^{re.escape(argv[1])}:", makefile, flags=re.M), argv
        elif argv[:2] == ["kind", "create"]:
            config = REPO / argv[argv.index("--config") + 1]
            assert config.exists(), config
            assert yaml.safe_load(config.read_text())["name"] == argv[argv.index("--name") + 1]
        elif argv[:2] == ["kubectl", "apply"] and "-f" in argv:
            assert (REPO / argv[argv.index("-f") + 1]).exists(), argv


def test_values_named_in_the_section_exist() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    roots = "api|worker|redis|apiKeys|autoscaling|ingress|serviceMonitor"
    named = set(re.findall(rf"`((?:{roots})(?:\.[A-Za-z]+)+)", section()))
    assert len(named) >= 10
    for path in named:
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"README names {path}, not in values.yaml"
            node = node[part]


def test_prerequisites_come_with_install_commands() -> None:
    """Issue 10: ingress-nginx, KEDA and cert-manager (for the TLS issuer the prod overlay names) are
    listed with the commands that install them, and the ClusterIssuer the manifests name is applied."""
    installs = {a[3] if a[2] == "--install" else a[2] for a in commands() if a[:2] in (["helm", "install"],
                                                                                        ["helm", "upgrade"])}
    assert {"ingress-nginx", "keda", "cert-manager"} <= installs
    issuers = {i["metadata"]["annotations"].get("cert-manager.io/cluster-issuer") for i in build_overlay("prod")
               if i["kind"] == "Ingress" and "tls" in i["spec"]}
    applied = [yaml.safe_load((REPO / a[a.index("-f") + 1]).read_text()) for a in commands()
               if a[:2] == ["kubectl", "apply"] and "-f" in a]
    assert issuers and issuers <= {d["metadata"]["name"] for d in applied if d["kind"] == "ClusterIssuer"}


def test_images_are_built_pushed_and_set_in_the_prod_overlay() -> None:
    """Issue 10 #2: a `docker push` for every image built for a registry, and `kustomize edit set image`
    pointing the prod overlay at exactly those images."""
    built = {a[a.index("-t") + 1] for a in commands() if a[:2] == ["docker", "build"]}
    pushed = {a[2] for a in commands() if a[:2] == ["docker", "push"]}
    assert built and built == pushed
    edits = [a for a in commands() if a[:4] == ["kustomize", "edit", "set", "image"]]
    set_in: dict[str, set[str]] = {}
    for edit in edits:
        cd = commands()[commands().index(edit) - 1]
        assert cd[0] == "cd", "kustomize edit runs in the overlay's directory"
        kustomization = yaml.safe_load((REPO / cd[1] / "kustomization.yaml").read_text())
        names = {ref.split("=", 1)[0] for ref in edit[4:]}
        assert names <= {i["name"] for i in kustomization["images"]}, cd[1]
        assert {ref.split("=", 1)[1] for ref in edit[4:]} <= built
        set_in[cd[1].rsplit("/", 1)[1]] = names
    assert set_in["prod"] == {"jobs-api", "jobs-worker"}


def test_dev_overlay_images_are_loaded_into_kind_first() -> None:
    """Issue 10 #2: the dev overlay's images must be in kind before `kubectl apply -k k8s/overlays/dev`."""
    cmds = commands()
    load = next(i for i, a in enumerate(cmds) if a[:3] == ["kind", "load", "docker-image"])
    apply = next(i for i, a in enumerate(cmds) if a[:2] == ["kubectl", "apply"] and a[-1].endswith("/dev"))
    assert load < apply
    images = {c["image"] for o in build_overlay("dev") for c in
              o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
              if c["image"].startswith("jobs-")}
    argv = cmds[load]
    assert images == set(argv[3:argv.index("--name")])
    assert argv[argv.index("--name") + 1] == yaml.safe_load((REPO / "tests/e2e/kind/cluster.yaml").read_text())["name"]
