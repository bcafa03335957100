"""The command line: every command form shown in README.md and docs/ parses with the real CLI
(so the two cannot drift), every option is in the README synopsis, and the forms users type."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bigcat import __version__
from bigcat.cli import MultiValueOption, cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")


def _blocks(path: Path) -> list[tuple[str, list[str]]]:
    """(language, lines) of every fenced code block of a Markdown file."""
    out, lang, lines = [], None, []
    for line in path.read_text().splitlines():
        m = FENCE.match(line.strip())
        if m and lang is None:
            lang, lines = m.group(1), []
        elif line.strip() == "```" and lang is not None:
            out.append((lang, lines))
            lang = None
        elif lang is not None:
            lines.append(line)
    return out


def _commands(lines: list[str]) -> list[str]:
    """Lines that run bigcat, with continuation lines joined and comments dropped."""
    cmds: list[str] = []
    for line in lines:
        text = line.split(" #")[0].rstrip()
        if text.lstrip().startswith("bigcat "):
            cmds.append(text.strip())
        elif cmds and line.startswith(" ") and text.strip() and cmds[-1].endswith("\\"):
            cmds[-1] = cmds[-1][:-1] + " " + text.strip()
        elif cmds and line.startswith("   ") and text.strip().startswith("["):
            cmds[-1] += " " + text.strip()  # synopsis continuation
    return [c.rstrip("\\").strip() for c in cmds]


def _examples() -> list[tuple[str, str]]:
    """Runnable command lines (shell code blocks) of README.md and docs/."""
    out = []
    for path in DOCS:
        for lang, lines in _blocks(path):
            if lang in ("bash", "sh", "console", "shell"):
                out += [(path.name, c) for c in _commands(lines)]
    return out


def _synopses() -> list[tuple[str, str]]:
    """Synopsis lines (plain code blocks: ``bigcat CMD [--opt X] ...``)."""
    out = []
    for path in DOCS:
        for lang, lines in _blocks(path):
            if lang == "":
                out += [(path.name, c) for c in _commands(lines)]
    return out


def _resolve(args: list[str]) -> tuple[click.Command, list[str], click.Context]:
    """The (sub)command an argv names, its remaining arguments and its parent context
    (leading global options such as -v go to the root group)."""
    args = list(args)
    lead = []
    while args and args[0].startswith("-"):
        lead.append(args.pop(0))
    ctx = cli.make_context("bigcat", [*lead, "--help"] if not args else lead + [args[0]])
    cmd: click.Command = cli
    while isinstance(cmd, click.Group) and args:
        name = args.pop(0)
        sub = cmd.get_command(ctx, name)
        assert sub is not None, f"no command {name!r}"
        cmd = sub
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=name, parent=ctx)
    return cmd, args, ctx


def _materialise(tokens: list[str], where: Path) -> None:
    """Create the files and directories a command line names (paths must exist to parse)."""
    for tok in tokens:
        if tok.startswith("-") or "://" in tok or re.fullmatch(r"[-+.\d]+", tok):
            continue
        path = where / tok
        if re.search(r"\.(parquet|csv|fits|toml|h5|json)$", tok):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        elif "/" in tok or tok.endswith("run") or tok.isupper() or "_" in tok or "-" in tok:
            path.mkdir(parents=True, exist_ok=True)


@pytest.mark.parametrize(("doc", "line"), _examples(), ids=lambda x: str(x)[:60])
def test_documented_command_parses(doc, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # absolute paths (/shared/...) are made under tmp_path, as relative ones
    tokens = [t.lstrip("/") if t.startswith("/") else t for t in shlex.split(line)[1:]]
    _materialise(tokens, tmp_path)
    cmd, rest, parent = _resolve(tokens)
    cmd.make_context(cmd.name or "", list(rest), parent=parent)  # raises on any bad form


def test_docs_show_command_lines():
    assert len(_examples()) >= 5, _examples()
    assert len(_synopses()) >= 6, _synopses()


def _all_commands() -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in cli.commands.items():
        if isinstance(cmd, click.Group):
            for sub_name, sub in cmd.commands.items():
                out[f"{name} {sub_name}"] = sub
        else:
            out[name] = cmd
    return out


def _synopsis_command(line: str) -> str:
    words = line.split()[1:]
    name = words[0]
    if name == "analyze":
        return "analyze gradient"  # "gradient|vertex": both checked below
    return name


def test_synopsis_options_exist_and_every_option_is_listed():
    readme = [line for doc, line in _synopses() if doc == "README.md"]
    commands = _all_commands()
    listed: dict[str, set[str]] = {}
    for line in readme:
        if line.split()[1].startswith("["):
            continue  # the global options line: bigcat [-v|-vv] [--version] COMMAND ...
        name = _synopsis_command(line)
        names = ["analyze gradient", "analyze vertex"] if name == "analyze gradient" else [name]
        opts = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", line))
        for n in names:
            assert n in commands, f"README synopsis names an unknown command: {line}"
            listed.setdefault(n, set()).update(opts)
    for name, cmd in commands.items():
        have = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        shown = listed.get(name, set())
        unknown = {o for o in shown if o not in have and o not in ("--help",)}
        if name.startswith("analyze"):
            other = "analyze vertex" if name == "analyze gradient" else "analyze gradient"
            other_opts = {
                o for p in commands[other].params if isinstance(p, click.Option) for o in p.opts
            }
            unknown -= other_opts
        assert not unknown, f"README synopsis of `bigcat {name}` shows unknown options {unknown}"
        missing = {
            p.opts[0]
            for p in cmd.params
            if isinstance(p, click.Option) and not (set(p.opts) & shown) and not p.hidden
        }
        assert not missing, f"README synopsis of `bigcat {name}` lacks {sorted(missing)}"


def test_multi_value_option_takes_values_after_one_flag_and_repeats():
    @click.command()
    @click.option("--labels", cls=MultiValueOption)
    @click.option("--out")
    def cmd(labels, out):
        click.echo(f"{list(labels)}|{out}")

    runner = CliRunner()
    one_flag = runner.invoke(cmd, ["--labels", "a.fits", "b.csv", "--out", "x"])
    repeated = runner.invoke(cmd, ["--labels", "a.fits", "--out", "x", "--labels", "b.csv"])
    assert one_flag.output.strip() == "['a.fits', 'b.csv']|x"
    assert repeated.output.strip() == "['a.fits', 'b.csv']|x"


def test_process_accepts_both_label_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("apogee.parquet", "lamost.parquet", "g.parquet"):
        (tmp_path / name).touch()
    cmd, rest, parent = _resolve(["process", "--input", "g.parquet"])
    ctx = cmd.make_context(
        "process",
        ["--labels", "apogee.parquet", "lamost.parquet", "--input", "g.parquet"],
        parent=parent,
    )
    assert ctx.params["labels"] == ("apogee.parquet", "lamost.parquet")
    ctx = cmd.make_context(
        "process", ["--labels", "apogee.parquet", "--labels", "lamost.parquet"], parent=parent
    )
    assert ctx.params["labels"] == ("apogee.parquet", "lamost.parquet")


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"bigcat {__version__}"


def test_vertex_zero_steps_is_an_error_not_ignored(tmp_path):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "partition_info.csv").write_text("Norder,Npix\n")
    result = CliRunner().invoke(cli, ["analyze", "vertex", str(tmp_path), "--steps", "0"])
    assert result.exit_code != 0
    assert "n_steps" in str(result.exception) or "n_steps" in result.output


def test_train_stage1_refuses_labels(tmp_path):
    labels = tmp_path / "apogee.parquet"
    labels.touch()
    result = CliRunner().invoke(cli, ["train", "stage1", str(tmp_path), "--labels", str(labels)])
    assert result.exit_code != 0
    assert "--labels is for `bigcat train stage2`" in result.output


def test_mock_seed_defaults_to_the_config(tmp_path, monkeypatch):
    """Without --seed, [mock] seed from --config is used (the option no longer overrides it)."""
    import bigcat.stages.mock as mock_stage

    seen = {}

    def fake_make_mock(client, params, rows, out, chunk_rows):
        seen["seed"] = params.seed
        return {"rows": rows}

    monkeypatch.setattr(mock_stage, "make_mock", fake_make_mock)
    monkeypatch.setattr("bigcat.cli._client", lambda config: _NullClient())
    monkeypatch.setattr("bigcat.cli._announce", lambda client, **kwargs: None)
    cfg = tmp_path / "bigcat.toml"
    cfg.write_text("[mock]\nseed = 7\n")
    result = CliRunner().invoke(
        cli, ["mock", "--rows", "10", "--out", str(tmp_path / "m"), "--config", str(cfg)]
    )
    assert result.exit_code == 0, result.output
    assert seen["seed"] == 7
    result = CliRunner().invoke(
        cli,
        ["mock", "--rows", "10", "--out", str(tmp_path / "m"), "--config", str(cfg), "--seed", "3"],
    )
    assert seen["seed"] == 3


class _NullClient:
    dashboard_link = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
