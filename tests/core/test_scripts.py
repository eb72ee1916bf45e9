"""The Lua command files: each documents its KEYS and ARGV, and every one ships and loads."""

from __future__ import annotations

import re
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


def test_includes_are_shaken_to_the_functions_a_command_uses() -> None:
    """An include's top-level function that nothing in the command calls (directly or through a function it
    keeps) is left out: each would cost a closure on every call (issue 16, profile 29)."""
    include = (
        "local function helper(x)\n  return x\nend\n"
        "local function used(x)\n  return helper(x)\nend\n"
        "local function unused(x)\n  return used(x)\nend\n"
        "-- only_in_a_comment is mentioned here\n"
        "local function only_in_a_comment()\nend\n"
        "local CONSTANT = 1\n"
    )
    shaken = scripts._shake("return used(KEYS[1])\n", [include])
    assert "local function used(" in shaken and "local function helper(" in shaken
    assert "local function unused(" not in shaken and "only_in_a_comment()" not in shaken
    assert "local CONSTANT = 1" in shaken


@pytest.mark.parametrize("name", COMMANDS)
def test_every_function_a_command_keeps_is_called(name: str) -> None:
    source = scripts.load(name)
    for fn in re.findall(r"^local function (\w+)\(", source, re.M):
        assert re.search(rf"\b{fn}\b", source.replace(f"local function {fn}(", "", 1)), (name, fn)
