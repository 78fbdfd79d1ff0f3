"""The commands and links of README.md and docs/*.md name configs, scripts, modules, make targets
and pages that exist, and their ``--help`` commands run."""

import glob
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from paths import ROOT

from lbt_lightning.lightning.cli import main

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
SHELLS = {"bash", "sh", "shell"}
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
# Repository files a command or a code span may name; benchmarks/results/ holds outputs, some not yet written.
FOLDERS = ("experiments/", "benchmarks/", "tests/", "examples/", "src/", "docs/")
OUTPUTS = ("benchmarks/results/",)
MAKE_TARGET = re.compile(r"^([\w.-]+)\s*:(?!=)", re.M)


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the page's bash/sh/shell blocks as words: continuations joined, comments dropped."""
    commands = []
    for language, body in FENCE.findall(text):
        if language in SHELLS:
            for line in body.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                commands += [words] if words else []
    return commands


def prose(text: str) -> str:
    """The page without its fenced blocks."""
    return FENCE.sub("", text)


def expand(path: str) -> list[str]:
    """``a/{b,c}.yaml`` -> ``a/b.yaml``, ``a/c.yaml``."""
    match = re.search(r"\{([^{}]*)\}", path)
    if not match:
        return [path]
    return [p for part in match[1].split(",") for p in expand(path[: match.start()] + part + path[match.end() :])]


def file_problems(word: str) -> list[str]:
    """A word naming a repository file (a config, a script, a test) that does not exist."""
    word = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
    word = word.split("::")[0].rstrip(".,;")
    if not word.startswith(FOLDERS) or word.startswith(OUTPUTS) or any(c in word for c in "<$"):
        return []
    missing = [p for p in expand(word) if not (glob.glob(str(ROOT / p)) if "*" in p else (ROOT / p).exists())]
    return [f"{p}: no such file" for p in missing]


def command_problems(words: list[str], targets: set[str]) -> list[str]:
    """Files, ``python -m`` modules and ``make`` targets named by one command that do not exist."""
    problems = [problem for word in words for problem in file_problems(word)]
    for i, word in enumerate(words[:-2]):
        if word in ("python", "python3") and words[i + 1] == "-m":
            try:
                found = importlib.util.find_spec(words[i + 2]) is not None
            except ModuleNotFoundError:
                found = False
            problems += [] if found else [f"python -m {words[i + 2]}: no such module"]
    if words and words[0] == "make":
        problems += [f"make {t}: no such target" for t in words[1:] if not t.startswith("-") and t not in targets]
    return problems


def anchors(text: str) -> set[str]:
    """GitHub's anchors of the page's headings: lower case, punctuation dropped, spaces to hyphens."""
    slugs: list[str] = []
    for heading in HEADING.findall(prose(text)):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        slugs.append(slug if slug not in slugs else f"{slug}-{slugs.count(slug)}")
    return set(slugs)


def link_problems(page: Path, text: str) -> list[str]:
    """Relative links (and #anchors) of the page that point nowhere."""
    problems = []
    for link in LINK.findall(INLINE_CODE.sub("", prose(text))):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            problems.append(f"link {link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            problems.append(f"link {link}: no such heading")
    return problems


def page_problems(page: Path, text: str | None = None) -> list[str]:
    """Everything on a page that names something that does not exist."""
    text = page.read_text() if text is None else text
    targets = set(MAKE_TARGET.findall((ROOT / "Makefile").read_text()))
    commands = shell_commands(text)
    commands += [shlex.split(span) for span in INLINE_CODE.findall(prose(text)) if "'" not in span and '"' not in span]
    problems = [problem for words in commands for problem in command_problems(words, targets)]
    return sorted(set(problems + link_problems(page, text)))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_commands_and_links_name_what_exists(page):
    assert page_problems(page) == []


def test_what_does_not_exist_is_reported():
    fake = """
See [the usage](usage.md#commands), [nothing](missing.md) and [no heading](usage.md#no-such-heading).

```bash
lightning fit --config experiments/trainer.yaml --config experiments/ring/missing.yaml
python -m lbt_lightning.programs.missing --help
make demo no-such-target
python benchmarks/missing.py
```
"""
    assert page_problems(ROOT / "docs" / "fake.md", fake) == sorted(
        [
            "benchmarks/missing.py: no such file",
            "experiments/ring/missing.yaml: no such file",
            "link missing.md: no such file",
            "link usage.md#no-such-heading: no such heading",
            "make no-such-target: no such target",
            "python -m lbt_lightning.programs.missing: no such module",
        ]
    )


def test_readme_is_a_front_page():
    """The reference lives in docs/; the README stays short enough to read first."""
    assert (ROOT / "README.md").stat().st_size <= 15_000


HELP = sorted({tuple(words) for page in PAGES for words in shell_commands(page.read_text()) if words[-1] == "--help"})


@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_help_commands_run(command, monkeypatch, capsys):
    """``lightning``/``lbt`` (console scripts, not on PATH in every test run) in this process;
    ``python -m`` in its own, as a user runs it."""
    if command[0] in ("lightning", "lbt"):
        monkeypatch.setattr(sys, "argv", list(command))
        with pytest.raises(SystemExit) as info:
            main()
        assert info.value.code == 0 and "usage:" in capsys.readouterr().out
        return
    assert command[0] in ("python", "python3") and command[1] == "-m", command
    result = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
