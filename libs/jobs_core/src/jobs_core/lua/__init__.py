"""Lua scripts kept as ``.lua`` files (one per command); :func:`source` assembles one with its helpers."""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def _read(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def source(name: str, *helpers: str) -> str:
    """The script ``name``.lua preceded by each helper file, each included once."""
    return "\n".join(_read(h) for h in dict.fromkeys(helpers)) + "\n" + _read(name)
