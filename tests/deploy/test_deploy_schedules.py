"""Schedules declared in the chart's values: rendered into a ConfigMap the API pods mount as
JOBS_SCHEDULES_FILE, accepted by the API's own loader, checked by the values schema, rolling the API pods."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobs_api.background import load_declared

from deploy.manifests import by_name, env_of, one, pod_spec, render_chart

SCHEDULES = [
    {"name": "nightly-report", "task": "echo", "cron": "0 2 * * *", "timezone": "Europe/Paris", "params": {"a": 1}},
    {"name": "poll", "tenant": "acme", "task": "echo", "cron": "* * * * * */30", "catchup": "skip",
     "overlap": "skip", "priority": 7},
]


def test_declared_schedules_reach_the_api_pods_and_its_loader(tmp_path: Path) -> None:
    objects = render_chart({"schedules": SCHEDULES})
    api = one(objects, "Deployment", "api")
    spec = pod_spec(api)
    env = env_of(spec["containers"][0], objects)
    path = env["JOBS_SCHEDULES_FILE"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "schedules")
    assert path.startswith(mounts["schedules"]["mountPath"] + "/") and mounts["schedules"]["readOnly"]
    cm = by_name(objects, "ConfigMap", volume["configMap"]["name"])
    file = tmp_path / "schedules.json"
    file.write_text(cm["data"][path.rsplit("/", 1)[1]])
    declared = load_declared(str(file))
    assert [(d.tenant, d.name, d.spec.cron) for d in declared] == [
        ("default", "nightly-report", "0 2 * * *"), ("acme", "poll", "* * * * * */30")]
    worker = pod_spec(one(objects, "Deployment", "worker"))["containers"][0]
    assert "JOBS_SCHEDULES_FILE" not in env_of(worker, objects)


def test_changing_schedules_rolls_the_api_pods() -> None:
    def checksum(values: dict[str, object]) -> str:
        api = one(render_chart(values), "Deployment", "api")
        return str(api["spec"]["template"]["metadata"]["annotations"]["checksum/schedules"])

    assert checksum({"schedules": SCHEDULES}) != checksum({"schedules": SCHEDULES[:1]})
    assert checksum({"schedules": SCHEDULES}) == checksum({"schedules": SCHEDULES})


@pytest.mark.parametrize("bad", [{"name": "x", "task": "echo"}, {"name": "a/b", "task": "echo", "cron": "* * * * *"},
                                 {"name": "x", "task": "echo", "cron": "* * * * *", "catchup": "most"},
                                 {"name": "x", "task": "echo", "cron": "* * * * *", "owner": "y"}])
def test_the_values_schema_refuses_bad_schedules(bad: dict[str, object]) -> None:
    with pytest.raises(Exception, match=r"(?i)schema|values"):
        render_chart({"schedules": [bad]})
