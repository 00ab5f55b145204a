"""The documentation site builds with mkdocs in strict mode: no broken link or anchor, no page left
out of the nav, no warning of any kind.

CI runs this through ``make test``, so the site cannot rot between releases.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("mkdocs", reason="mkdocs is not installed (it comes with the project's test extra)")


def test_the_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not warnings, "mkdocs warned:\n" + "\n".join(warnings)
    assert (site / "index.html").is_file()
    assert (site / "config" / "index.html").is_file()
    assert (site / "cli" / "index.html").is_file()


def test_every_docs_page_is_in_the_nav() -> None:
    """A page outside the nav cannot be found from the site's menu (strict mode also warns)."""
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    missing = [page for page in pages if f" {page}" not in nav]
    assert not missing, f"docs pages missing from mkdocs.yml's nav: {missing}"
