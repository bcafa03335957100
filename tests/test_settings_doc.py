"""docs/settings.md documents every configuration key with its actual default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bigcat.config import Config

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
#: Sections that are mappings (any key), documented in prose rather than one row per key.
MAPPING_SECTIONS = {"columns", "survey_columns"}


def _toml(value: object) -> str:
    """A default as the doc writes it (TOML literal)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _doc_tables() -> dict[str, dict[str, str]]:
    """{section: {key: default cell}} from the '## [section]' tables of the doc."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for line in DOC.read_text().splitlines():
        m = re.match(r"^## \[([a-z0-9_.]+)\]", line)
        if m:
            section = m.group(1)
            out.setdefault(section, {})
            continue
        if line.startswith("## "):
            section = None
            continue
        if section and line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            for key in re.findall(r"`([a-z0-9_]+)`", cells[0]):
                out[section][key] = cells[1]
    return out


def _sections() -> dict[str, dict]:
    flat: dict[str, dict] = {}
    for name, body in Config().to_dict().items():
        if name in MAPPING_SECTIONS:
            continue
        keys = {k: v for k, v in body.items() if not isinstance(v, dict)}
        flat[name] = keys
        for k, v in body.items():
            if isinstance(v, dict) and name != "photometry":
                flat[f"{name}.{k}"] = v
    return flat


SECTIONS = _sections()


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_documented_with_its_default(section):
    doc = _doc_tables()
    assert section in doc, f"docs/settings.md has no '## [{section}]' table"
    rows = doc[section]
    missing = sorted(set(SECTIONS[section]) - set(rows))
    assert not missing, f"[{section}] keys missing from docs/settings.md: {missing}"
    for key, value in SECTIONS[section].items():
        cell = rows[key]
        literal = re.fullmatch(r"`([^`]*)`", cell)
        if literal is None:  # prose default (e.g. a table of ratios)
            continue
        assert literal.group(1) == _toml(value), (
            f"docs/settings.md [{section}] {key}: documented default {cell}, actual {_toml(value)}"
        )


def test_no_documented_key_that_does_not_exist():
    doc = _doc_tables()
    for section, rows in doc.items():
        if section in MAPPING_SECTIONS or section not in SECTIONS:
            continue
        actual = (
            set(SECTIONS[section])
            | {k for k, v in Config().to_dict()[section].items() if isinstance(v, dict)}
            if "." not in section
            else set(SECTIONS[section])
        )
        extra = sorted(set(rows) - actual)
        assert not extra, f"docs/settings.md [{section}] documents unknown keys: {extra}"
