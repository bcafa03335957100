"""docs/design.md's package layout lists every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layout_paths() -> set[str]:
    text = (ROOT / "docs" / "design.md").read_text()
    block = text.split("## Package layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    stack: list[str] = []
    paths = set()
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m or m.group(2).startswith("("):
            continue  # blank, or the continuation of a description
        depth, name = len(m.group(1)) // 2, m.group(2)
        if not (name.endswith("/") or name.endswith(".py")):
            continue
        stack = stack[:depth]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        else:
            paths.add("/".join([*stack, name]))
    return paths


def test_package_layout_lists_every_module():
    listed = _layout_paths()
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "bigcat").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    # a subpackage's __init__.py is listed only where it holds code
    missing = {m for m in modules - listed if not m.endswith("/__init__.py")}
    assert not missing, f"docs/design.md's package layout does not list {sorted(missing)}"
    stale = listed - modules
    assert not stale, f"docs/design.md's package layout lists missing modules {sorted(stale)}"
