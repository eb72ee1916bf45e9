"""The e2e scenarios against the stack as local processes: redis-server, gunicorn API, workers.

`make test` runs the same scenarios against the images (tests/containers/test_images.py::test_scenario),
so this module runs there only when the container tests are skipped (``JOBS_SKIP_CONTAINER_TESTS=1``);
``RELIABILITY_PROFILE=full`` (`make reliability`) always runs it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability import report

from e2e import scenarios
from e2e.managed import LocalStack

if not report.FULL and os.environ.get("JOBS_SKIP_CONTAINER_TESTS") != "1":
    pytest.skip("the container tests run these scenarios against the images; here with RELIABILITY_PROFILE=full "
                "or JOBS_SKIP_CONTAINER_TESTS=1", allow_module_level=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(Path(tmp_path_factory.mktemp("local-stack")), workers=2) as s:
        yield s


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(scenarios.ALL))
def test_scenario(stack: LocalStack, name: str) -> None:
    scenarios.ALL[name](stack)
