"""benchmarks/bench_probe.py: healthy probes through the probe's judge, counted as it prints them."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_probe


def test_it_counts_held_batches_and_false_rollbacks(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_probe.main(["--runs", "300", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    held = float(re.search(r"first batch not a pass \(held or thin\): ([0-9.]+)%", out)[1])  # type: ignore[index]
    failed = int(re.search(r"probe failed .*\((\d+) runs\)", out)[1])  # type: ignore[index]
    mean = float(re.search(r"batches per probe, mean: +([0-9.]+)", out)[1])  # type: ignore[index]
    # a held first batch costs a second one; a probe never runs fewer than one batch
    assert 1.0 + held / 100 <= mean + 1e-9
    assert failed <= round(300 * held / 100), "a probe whose first batch passes has passed"


def test_batches_below_min_requests_need_more_of_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_probe.main(["--runs", "20", "--requests", "50"]) == 0
    out = capsys.readouterr().out
    assert "first batch not a pass (held or thin): 100.00%" in out  # 50 < minRequests 100: carried
    assert float(re.search(r"batches per probe, mean: +([0-9.]+)", out)[1]) >= 2  # type: ignore[index]
