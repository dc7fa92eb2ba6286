"""The documentation holds together: every cited page and heading exists, the README stays short.

Code, scripts, tests and the markdown files cite the docs as a path with an optional GitHub
anchor, e.g. ``docs/compile.md#warm-start`` (README.md, BENCHMARKS.md, CONTRIBUTING.md or a page
under docs/, relative to the repository root). Each such reference must name a file that exists
and, if it has an anchor, a heading of that file whose GitHub slug the anchor is. Markdown links
(``[text](target#anchor)``) are checked the way GitHub resolves them: relative to the file that
holds them. Renaming a heading therefore fails here, naming every citation to update.
"""

from __future__ import annotations

import re
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A documentation reference; the look-behind keeps the tail of another path (a
# vendor/README.md, ../README.md in a docs/ link) from being read as the root's file.
REFERENCE = re.compile(
    r"(?<![A-Za-z0-9_./\-])(README\.md|BENCHMARKS\.md|CONTRIBUTING\.md|docs/[A-Za-z0-9_\-/]+\.md)(#[A-Za-z0-9_\-]+)?"
)
MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"``.+?``|`[^`\n]*`")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text lowercased, every character that is not a
    letter, digit, space, '-' or '_' removed, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text, not its target
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors_of(text: str) -> set[str]:
    """The anchors of a markdown text's headings (outside code blocks); a repeated slug gets
    -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    anchors = set()
    for m in HEADING.finditer(FENCE.sub("", text)):
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


@lru_cache(maxsize=None)
def _anchors_of_file(path: Path) -> frozenset[str]:
    return frozenset(anchors_of(path.read_text(encoding="utf-8")))


def target_problem(path: Path, anchor: str | None, shown: str) -> str | None:
    """Why ``path#anchor`` is not a valid target (None if it is)."""
    if not path.exists():
        return f"{shown}: no such file"
    if anchor:
        if path.suffix != ".md" or path.is_dir():
            return f"{shown}: an anchor on something that is not a markdown file"
        if anchor not in _anchors_of_file(path):
            return f"{shown}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} has no heading #{anchor}"
    return None


def find_references(text: str) -> list[tuple[str, str | None]]:
    """Every documentation reference in ``text``: (path from the repository root, anchor or None)."""
    return [(m.group(1), m.group(2)[1:] if m.group(2) else None) for m in REFERENCE.finditer(text)]


def reference_problems(text: str, where: str, root: Path = ROOT) -> list[str]:
    """What is wrong with the documentation references in ``text`` (found in ``where``)."""
    problems = []
    for path, anchor in find_references(text):
        shown = path + (f"#{anchor}" if anchor else "")
        problem = target_problem(root / path, anchor, shown)
        if problem and f"{where}: {problem}" not in problems:
            problems.append(f"{where}: {problem}")
    return problems


def link_problems(text: str, md_file: Path) -> list[str]:
    """What is wrong with the relative links of a markdown file (resolved from its folder)."""
    problems = []
    prose = INLINE_CODE.sub("", FENCE.sub("", text))
    for m in MD_LINK.finditer(prose):
        target = m.group(1)
        if re.match(r"[a-z][a-z0-9+.\-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (md_file.parent / path).resolve() if path else md_file
        problem = target_problem(resolved, anchor or None, target)
        if problem and f"{md_file.relative_to(ROOT)}: link {problem}" not in problems:
            problems.append(f"{md_file.relative_to(ROOT)}: link {problem}")
    return problems


def scanned_files() -> list[Path]:
    globs = ["kgopt/**/*.py", "scripts/*.py", "scripts/*.sh", "tests/**/*.py", "*.md", "docs/*.md"]
    return sorted({p for g in globs for p in ROOT.glob(g) if p.is_file()})


def markdown_files() -> list[Path]:
    return sorted(set(ROOT.glob("*.md")) | set(ROOT.glob("docs/*.md")))


# --- the checker itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "heading, slug",
    [
        ("Compile: the prompt search", "compile-the-prompt-search"),
        ("How a task is asked (the baseline)", "how-a-task-is-asked-the-baseline"),
        ("`kgopt extract`: throughput, client overhead, cache", "kgopt-extract-throughput-client-overhead-cache"),
        ("Knowledge graphs end to end: `scripts/bench_kg.py`", "knowledge-graphs-end-to-end-scriptsbench_kgpy"),
        ("NER/en (B = 30; 12 train, 2 dev, 6 test records; 3 seeds)", "neren-b--30-12-train-2-dev-6-test-records-3-seeds"),
        ("Set-up: two commands", "set-up-two-commands"),
    ],
)
def test_slug_of_a_heading_is_githubs(heading, slug):
    assert github_slug(heading) == slug


def test_repeated_headings_and_code_blocks():
    text = "# Data\n\n## Data\n\n```bash\n# not a heading\n```\n\n### Data\n"
    assert anchors_of(text) == {"data", "data-1", "data-2"}


def test_a_made_up_reference_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Real heading\n", encoding="utf-8")
    missing_file = "docs" + "/no-such-page.md"
    missing_heading = "docs" + "/page.md" + "#no-such-heading"
    good = "docs" + "/page.md" + "#real-heading"
    text = f"see {missing_file}, {missing_heading} and {good}"
    page = missing_heading.partition("#")[0]
    assert find_references(text) == [(missing_file, None), (page, "no-such-heading"), (page, "real-heading")]
    problems = reference_problems(text, "x.py:1", root=tmp_path)
    assert len(problems) == 2
    assert "no-such-page.md: no such file" in problems[0] and "no heading #no-such-heading" in problems[1]
    assert reference_problems(f"see {good}", "x.py:1", root=tmp_path) == []


def test_a_made_up_markdown_link_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n## Here\n", encoding="utf-8")
    text = "[a](page" + ".md#here) [b](page" + ".md#gone) [c](#here) [d](nowhere" + ".md) [e](https://example.com/x.md)"
    page.write_text(page.read_text(encoding="utf-8") + text, encoding="utf-8")
    problems = link_problems(page.read_text(encoding="utf-8"), page)
    assert len(problems) == 2 and "#gone" in problems[0] and "nowhere" in problems[1]
    assert link_problems("[x](#nowhere)", page) == ["page.md: link #nowhere: page.md has no heading #nowhere"]


def test_other_paths_ending_in_a_doc_name_are_not_references():
    assert find_references("kgopt/graph/vendor/" + "README.md and ../" + "README.md") == []


# --- the repository -------------------------------------------------------------------------


def test_every_documentation_reference_resolves():
    problems = []
    for path in scanned_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            problems += reference_problems(line, f"{path.relative_to(ROOT)}:{number}")
    assert not problems, "\n".join(problems)


def test_every_relative_markdown_link_resolves():
    problems = []
    for path in markdown_files():
        problems += link_problems(path.read_text(encoding="utf-8"), path)
    assert not problems, "\n".join(problems)


def test_readme_is_short_and_starts_with_the_set_up():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 260
    assert any("bash scripts/setup.sh" in line for line in lines[:40])


def test_readme_shows_the_test_command_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    pytest_line = next(line.strip() for line in ci if "-m pytest" in line and not line.lstrip().startswith("#"))
    assert pytest_line in (ROOT / "README.md").read_text(encoding="utf-8")


def test_benchmarks_start_with_the_rule_and_keep_the_baseline_table():
    text = (ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    first_section = text.index("\n## ")
    assert "**The rule for every comparison below**" in text[:first_section]
    assert "compiled-programs-against-the-strongest-zero-shot-baseline" in anchors_of(text)
