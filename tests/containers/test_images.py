"""Build both images and prove them: metadata, non-root + read-only root FS, the e2e scenarios against
the containers, a clean drain on ``docker stop``, and the documented extension of the worker image.

Docker is required: this module FAILS (never skips) when no engine can be started, because CI must
exercise it. Set ``JOBS_SKIP_CONTAINER_TESTS=1`` to opt out on a machine without Docker.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import scenarios
from e2e.api_client import TERMINAL

from containers.docker_stack import RUN_FLAGS, DockerStack, docker

REPO = Path(__file__).resolve().parents[2]
TAG = os.environ.get("IMAGE_TAG", "dev")
IMAGES = {"api": f"jobs-api:{TAG}", "worker": f"jobs-worker:{TAG}"}
BASE = "python:3.12-slim"
#: What each image may add on top of the base (MB). The worker carries the kubernetes client.
SIZE_BUDGET_MB = {"api": 60, "worker": 130}

if os.environ.get("JOBS_SKIP_CONTAINER_TESTS") == "1":
    pytest.skip("JOBS_SKIP_CONTAINER_TESTS=1 opts out of the image tests (a machine without Docker); "
                "tests/e2e/test_local_stack.py runs their scenarios against local processes instead",
                allow_module_level=True)


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Engine up, stand-in base present, both images built from the current sources (layer-cached)."""
    start = time.monotonic()
    proc = subprocess.run(["bash", "scripts/docker/build-images.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=1200, env={**os.environ, "IMAGE_TAG": TAG})
    if proc.returncode != 0:
        pytest.fail(f"cannot build the images (Docker engine or build failed):\n{proc.stdout}\n{proc.stderr}")
    print(f"\n{proc.stderr.strip()}\nimages ready in {time.monotonic() - start:.0f}s")
    return IMAGES


def inspect(image: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("image", "inspect", image).stdout)
    return data[0]


@pytest.mark.timeout(1300)
@pytest.mark.parametrize("svc", ["api", "worker"])
def test_image_metadata(images: dict[str, str], svc: str) -> None:
    meta = inspect(images[svc])
    config = meta["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == [f"jobs-{svc}"]  # exec form: the service is PID 1 and gets SIGTERM
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    if svc == "api":
        assert env["JOBS_BIND"] == "0.0.0.0:8000"
        assert "8000/tcp" in config["ExposedPorts"]
    added_mb = (meta["Size"] - inspect(BASE)["Size"]) / 1e6
    print(f"{images[svc]}: {meta['Size'] / 1e6:.0f} MB ({added_mb:.0f} MB over {BASE})")
    assert added_mb <= SIZE_BUDGET_MB[svc], f"{images[svc]} adds {added_mb:.0f} MB to the base"


@pytest.mark.parametrize("svc", ["api", "worker"])
def test_runs_non_root_on_read_only_root_fs(images: dict[str, str], svc: str) -> None:
    probe = (
        "import os, pathlib, sys\n"
        "assert os.getuid() == 10001 and os.getgid() == 10001, os.getuid()\n"
        "pathlib.Path('/tmp/probe').write_text('ok')\n"
        "for p in ('/opt/venv/probe', '/app/probe', '/probe'):\n"
        "    try:\n"
        "        open(p, 'w')\n"
        "    except OSError:\n"
        "        continue\n"
        "    sys.exit(f'{p} is writable')\n"
        "assert not os.path.exists('/src'), 'build tree leaked into the image'\n"
        f"import jobs_{svc}, jobs_core\n"
        "print('ok')\n"
    )
    out = docker("run", "--rm", *RUN_FLAGS, "--entrypoint", "python", images[svc], "-c", probe, check=False)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    # nothing from the builder stage (uv, the source tree, caches) reaches the final image
    leak = docker("run", "--rm", "--entrypoint", "sh", images[svc], "-c",
                  "command -v uv; ls -d /src /root/.cache 2>/dev/null; true", check=False)
    assert leak.stdout.strip() == "", f"builder leftovers in {images[svc]}: {leak.stdout}"
    help_ = docker("run", "--rm", *RUN_FLAGS, images[svc], "--help", check=False)
    assert help_.returncode == 0, help_.stderr


@pytest.fixture(scope="module")
def stack(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerStack]:
    with DockerStack(Path(tmp_path_factory.mktemp("container-stack")), images["api"], images["worker"]) as s:
        yield s


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(scenarios.ALL))
def test_scenario(stack: DockerStack, name: str) -> None:
    scenarios.ALL[name](stack)


def test_healthchecks_pass(stack: DockerStack) -> None:
    """The images' HEALTHCHECKs (API /healthz, `jobs-worker check`) report healthy on a running stack."""
    handles = [h for h in [stack.api_handle, *stack.workers] if h is not None]
    deadline = time.monotonic() + 30
    while (states := {h.name: stack.health(h) for h in handles}) and set(states.values()) != {"healthy"}:
        assert "unhealthy" not in states.values() and time.monotonic() < deadline, states
        time.sleep(0.5)


def _only_worker(stack: DockerStack, **env: str) -> Any:
    """Stop every worker (idle ones must exit 0 promptly), then start one with ``env``."""
    for h in list(stack.workers):
        start = time.monotonic()
        code = stack.stop_handle(h, 30)
        stack.workers.remove(h)
        assert code == 0, f"idle worker exited {code} on docker stop:\n{h.log.read_text()[-2000:]}"
        assert time.monotonic() - start < 15, "an idle worker took long to stop"
    return stack.start_worker(env)


@pytest.mark.timeout(180)
def test_docker_stop_drains_running_job(stack: DockerStack) -> None:
    """SIGTERM mid-job: the worker finishes the job within the drain time, then exits 0."""
    h = _only_worker(stack, JOBS_DRAIN_SECONDS="20")
    job = stack.api.submit_ok("sleep", {"seconds": 3})
    running = stack.api.wait_status(job["id"], {"running"}, 60)
    assert running["worker"].startswith(h.ident + ":")
    start = time.monotonic()
    code = stack.stop_handle(h, 40)
    stack.workers.remove(h)
    took = time.monotonic() - start
    assert code == 0, f"worker exited {code}:\n{h.log.read_text()[-2000:]}"
    assert took < 20, f"docker stop took {took:.1f}s for a 3 s job"
    done = stack.api.job(job["id"])
    assert done["status"] == "succeeded" and done["attempts"] == 1, done
    stack.start_worker()


@pytest.mark.timeout(180)
def test_docker_stop_hands_back_after_drain_deadline(stack: DockerStack) -> None:
    """A job longer than the drain time is handed back (queued, attempt not charged) and finished later."""
    h = _only_worker(stack, JOBS_DRAIN_SECONDS="1")
    job = stack.api.submit_ok("sleep", {"seconds": 6})
    stack.api.wait_status(job["id"], {"running"}, 60)
    code = stack.stop_handle(h, 30)
    stack.workers.remove(h)
    assert code == 0, f"worker exited {code}:\n{h.log.read_text()[-2000:]}"
    back = stack.api.job(job["id"])
    assert back["status"] == "queued" and back["attempts"] == 0, back
    stack.start_worker()
    done = stack.api.wait_status(job["id"], TERMINAL, 60)
    assert done["status"] == "succeeded" and done["attempts"] == 1, done


USER_TASKS = '''\
from jobs_worker import task


@task("shout", params_schema={"type": "object", "properties": {"text": {"type": "string"}}})
def shout(params, ctx):
    """Upper-case the text."""
    return {"text": params.get("text", "").upper()}
'''


@pytest.mark.timeout(300)
def test_worker_image_extended_with_user_tasks(
    stack: DockerStack, images: dict[str, str], tmp_path: Path
) -> None:
    """The README's three-line Dockerfile: FROM the worker image, COPY a module, name it."""
    (tmp_path / "mytasks.py").write_text(USER_TASKS)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {images['worker']}\nCOPY mytasks.py /app/\nENV JOBS_TASK_MODULES=mytasks PYTHONPATH=/app\n"
    )
    docker("build", "--network", "host", "-t", f"jobs-worker-mytasks:{TAG}", str(tmp_path), timeout=300)
    default_image = stack.worker_image
    stack.worker_image = f"jobs-worker-mytasks:{TAG}"
    try:
        for h in list(stack.workers):
            stack.stop_handle(h, 30)
            stack.workers.remove(h)
        stack.start_worker()
        deadline = time.monotonic() + 60
        while not any(t["name"] == "shout" for t in stack.api.request("GET", "/tasks").json()["tasks"]):
            assert time.monotonic() < deadline, f"task 'shout' never published:\n{stack.logs()}"
            time.sleep(0.3)
        job = stack.api.submit_ok("shout", {"text": "hello"})
        done = stack.api.wait_status(job["id"], TERMINAL, 60)
        assert done["status"] == "succeeded", f"{done}\n{stack.logs()}"
        assert stack.api.request("GET", f"/jobs/{job['id']}/result").json() == {"text": "HELLO"}
    finally:
        stack.worker_image = default_image


@pytest.mark.timeout(120)
def test_docker_stop_api_exits_cleanly(stack: DockerStack) -> None:
    """gunicorn as PID 1 takes SIGTERM: finishes in-flight requests and exits 0, well before the SIGKILL."""
    assert stack.api_handle is not None
    h, stack.api_handle = stack.api_handle, None
    start = time.monotonic()
    code = stack.stop_handle(h, 40)
    took = time.monotonic() - start
    assert code == 0, f"API exited {code}:\n{h.log.read_text()[-2000:]}"
    assert took < 35, f"docker stop of the API took {took:.1f}s"
