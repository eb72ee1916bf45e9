"""Render once per session: every chart value set and every kustomize overlay."""

from __future__ import annotations

import pytest

from deploy.manifests import VALUE_SETS, Obj, build_overlay, overlay_names, render_chart


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """Chart objects per value set name."""
    return {name: render_chart(values) for name, values in VALUE_SETS.items()}


@pytest.fixture(scope="session")
def overlays() -> dict[str, list[Obj]]:
    """kustomize output per overlay name."""
    return {name: build_overlay(name) for name in overlay_names()}


@pytest.fixture(scope="session")
def all_sources(rendered: dict[str, list[Obj]], overlays: dict[str, list[Obj]]) -> dict[str, list[Obj]]:
    """Every rendered object set: ``helm:<value set>`` and ``kustomize:<overlay>``."""
    sources = {f"helm:{k}": v for k, v in rendered.items()}
    sources.update({f"kustomize:{k}": v for k, v in overlays.items()})
    return sources
