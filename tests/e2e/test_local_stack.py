"""The e2e scenarios against the stack as local processes: redis-server, gunicorn API, workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.managed import LocalStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(Path(tmp_path_factory.mktemp("local-stack")), workers=2) as s:
        yield s


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", list(scenarios.ALL))
def test_scenario(stack: LocalStack, name: str) -> None:
    scenarios.ALL[name](stack)
