"""The Lua command files: each documents its KEYS and ARGV, and every one ships and loads."""

from __future__ import annotations

from importlib import resources

import pytest
from jobs_core import scripts

LUA = resources.files("jobs_core") / "lua"
COMMANDS = sorted(p.name[:-4] for p in LUA.iterdir() if p.name.endswith(".lua"))


def test_every_command_file_is_loaded_by_the_module() -> None:
    assert COMMANDS and all(getattr(scripts, name.upper()) == scripts.load(name) for name in COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_each_command_has_a_keys_and_argv_header_and_includes_once(name: str) -> None:
    source = scripts.load(name)
    assert "-- KEYS:" in source and "-- ARGV:" in source
    assert "@include" not in source  # every include was expanded
    for fn in ("now_ms", "claim_batch", "finish_one", "memo_save"):
        assert source.count(f"local function {fn}(") <= 1
