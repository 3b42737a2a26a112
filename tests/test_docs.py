"""The documentation's links and paths: every relative link in the README, docs/ and the folder READMEs
resolves to a file or folder of the repository (and a ``#fragment`` to a heading of the file it names),
and every repository path written in backticks exists. Reads files only: no server, no import of the
package.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The documentation a reader follows from the README.
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "benchmarks" / "README.md",
        ROOT / "export" / "README.md",
        ROOT / "client" / "README.md",
        ROOT / "model_repository" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)

#: Top-level entries a backticked path may start with (a path under them must exist).
TOP = ("canary_triton/", "benchmarks/", "client/", "export/", "model_repository/", "deploy/", "docs/", "scripts/")
TOP_FILES = ("Dockerfile.triton", "Dockerfile.cpu", "pyproject.toml", "README.md", ".ci/run")

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")
CODE = re.compile(r"`([^`\n]+)`")


def _prose(text: str) -> str:
    """The text outside fenced code blocks (commands there name files a run creates)."""
    keep, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            keep.append(line)
    return "\n".join(keep)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        out.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return out


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no heading #{fragment} in {_name(dest)}")
    assert not broken, f"{_name(doc)}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_backticked_repository_path_exists(doc: Path) -> None:
    missing = []
    for span in CODE.findall(_prose(doc.read_text(encoding="utf-8"))):
        for word in span.split():
            word = word.strip(".,;:()'\"")
            if any(ch in word for ch in "*<>{}$|=") or "…" in word or "..." in word:
                continue  # a pattern, a placeholder or an option, not one path
            word = re.sub(r"::.*$", "", word)  # a test id: tests/x.py::test_y
            if not (word.startswith(TOP + ("tests/",)) or word in TOP_FILES):
                continue
            if not (ROOT / word).exists():
                missing.append(word)
    assert not missing, f"{_name(doc)} names paths that do not exist: {sorted(set(missing))}"


def test_the_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if f"(docs/{p.name}" not in readme]
    assert not unlinked, f"docs pages the README does not link: {unlinked}"
