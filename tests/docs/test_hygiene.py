"""The README and the docs are user documents: no paths of the machine they were written on, no
HTML comments (working notes hide there), and every relative link leads to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MACHINE_PATHS = ("/work/", "/home/", "/root/")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_machine_paths(page: Path) -> None:
    text = page.read_text()
    found = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if any(path in line for path in MACHINE_PATHS)
    ]
    assert not found, f"{page.name} names paths of a machine:\n" + "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_html_comments(page: Path) -> None:
    text = page.read_text()
    assert "<!--" not in text and "-->" not in text, f"{page.name} holds an HTML comment"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(page: Path) -> None:
    targets = re.findall(r"\]\(([^)\s]+)\)", page.read_text())
    broken = [
        target
        for target in targets
        if not re.match(r"[a-z]+:", target)
        and not target.startswith("#")
        and not (page.parent / target.split("#", 1)[0]).exists()
    ]
    assert not broken, f"{page.name} links to files that do not exist: {broken}"


def test_the_readme_stays_short() -> None:
    """A newcomer's first page; reference material belongs in docs/."""
    assert len((ROOT / "README.md").read_bytes()) <= 15 * 1024
