"""The engine built by tools/build-engine.sh: the pinned release, and what sits beside it."""

from __future__ import annotations

import re
import subprocess

from engine_support import PROJECT

from rfs_deploy.sim.engine import engine_bin


def pinned_version() -> str:
    text = (PROJECT / "tools" / "engine" / "go.mod").read_text()
    found = re.search(r"github\.com/pulumi/pulumi/pkg/v3 (v\S+)", text)
    assert found is not None
    return found.group(1)


def test_the_cli_reports_the_pinned_release() -> None:
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    out = subprocess.run([str(bin_dir / "pulumi"), "version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == pinned_version()


def test_the_language_host_and_the_provider_double_sit_beside_the_cli() -> None:
    bin_dir = engine_bin(PROJECT)
    assert bin_dir is not None
    for name in ("pulumi-language-python", "pulumi-language-python-exec", "pulumi-resource-aws"):
        assert (bin_dir / name).is_file(), name
    # Pulumi's own launcher, from the sdk/v3 module: it configures the runtime and runs the program
    assert "pulumi.runtime.configure" in (bin_dir / "pulumi-language-python-exec").read_text()


def test_a_second_build_of_the_same_version_is_skipped() -> None:
    out = subprocess.run(
        ["bash", str(PROJECT / "tools" / "build-engine.sh")], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "already built" in out.stdout
