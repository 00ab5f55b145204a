"""``rfs-deploy`` exit codes, ``--json`` and the timeline report, each in a new process.

0 completed (and a requested abort or rollback that restored the checkpoint: see
test_cli_status_journal.py and test_cli_lifecycle.py), 3 rolled back by the judge, 2 invalid input
(one line on stderr, no traceback, nothing changed); 4 internal errors and 141 a closed stdout are
in test_cli_pipeline.py.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from cli_helpers import SERVICE, STACK, Place, make_place, one_error_line

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_report(place: Place, paths: list[str], deployment_id: str, steps: int) -> str:
    """The PNG is a real picture of the figure's size; the HTML embeds it and lists every step."""
    png, html = (place.cwd / p for p in paths)
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (1100, 800)
    page = html.read_text(encoding="utf-8")
    assert png.stem == html.stem == deployment_id
    assert "<h2>Steps</h2>" in page and "data:image/png;base64," in page
    assert page.count("<tr class=") >= steps
    return page


def test_simulate_healthy_is_one_json_document_and_exit_0(place: Place) -> None:
    done = place.run("--json", "simulate", "--report", "report")
    assert done.code == 0, done.stderr
    payload = done.json()  # the whole of stdout is one document
    assert payload["status"] == "COMPLETED" and payload["exit_code"] == 0
    assert (payload["service"], payload["version"], payload["strategy"]) == (SERVICE, "v2.0.0", "canary")
    assert payload["summary"]["requests"] > 10_000
    assert [Path(p).parent for p in payload["report"]] == [Path("report")] * 2
    page = check_report(place, payload["report"], payload["deployment_id"], steps=payload["total_steps"])
    assert page.count("<tr class='passed'>") == payload["total_steps"] == 25
    assert "set weight 10%" in page and "COMPLETED" in page
    assert not (place.cwd / "out").exists()


def test_simulate_error_spike_rolls_back_with_exit_3(place: Place) -> None:
    done = place.run("--json", "simulate", "--scenario", "error-spike", "--report", "report")
    assert done.code == 3, done.stderr
    payload = done.json()
    assert payload["status"] == "ROLLED_BACK" and payload["exit_code"] == 3
    assert payload["rolled_back_to"] == 1
    page = check_report(place, payload["report"], payload["deployment_id"], steps=5)
    assert "<tr class='failed'>" in page and "ROLLED_BACK" in page and "5xx" in page


def test_simulate_without_json_prints_progress_and_writes_the_report_to_out(place: Place) -> None:
    done = place.run("simulate", "--strategy", "blue-green")
    assert done.code == 0, done.stderr
    assert "step 1/9: deploy v2.0.0 to the idle slot" in done.stderr
    assert "deployment COMPLETED" in done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith("deployment ") and first.endswith("COMPLETED (api-service → v2.0.0)")
    assert len(list((place.cwd / "out").glob("*.png"))) == 1
    assert len(list((place.cwd / "out").glob("*.html"))) == 1


@pytest.fixture(scope="module")
def created(tmp_path_factory: pytest.TempPathFactory) -> Place:
    """A sandbox stack that exists (its first update ran), for commands that must change nothing."""
    place = make_place(tmp_path_factory.mktemp("bad-input"))
    done = place.run("--quiet", "up", "--stack", STACK)
    assert done.code == 0, done.stderr
    return place


DEPLOY = ("deploy", "--stack", STACK, "--service", SERVICE)
BAD_INPUT = [
    (("deploy", "--stack", "nope", "--service", SERVICE, "--version", "v2.0.0"), "unknown stack 'nope'"),
    (("deploy", "--stack", STACK, "--service", "nope", "--version", "v2.0.0"), "unknown service 'nope'"),
    ((*DEPLOY, "--version", "v2.0.0", "--strategy", "bogus"), "invalid choice: 'bogus'"),
    ((*DEPLOY, "--version", "v9.9.9"), "version 'v9.9.9' has no image"),
    ((*DEPLOY, "--version", "v2.0.0", "--scenario", "nope"), "unknown scenario 'nope'"),
    (("status", "--stack", STACK, "deadbeef"), "unknown deployment 'deadbeef'"),
    (("rollback", "--stack", STACK, "--service", SERVICE, "--to", "999"), "no version 999"),
    (("resume", "--stack", STACK), "no open deployment"),
    (("deploy", "--stack", STACK, "--version", "v2.0.0"), "--service"),
]


@pytest.mark.parametrize(("args", "says"), BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(created: Place, args: tuple[str, ...], says: str) -> None:
    line = one_error_line(created.run(*args), 2)
    assert says in line


def test_bad_input_with_json_is_a_json_error(created: Place) -> None:
    done = created.run("--json", *DEPLOY, "--version", "v9.9.9")
    one_error_line(done, 2)
    payload = done.json()
    assert payload["exit_code"] == 2 and "v9.9.9" in payload["error"]


def test_a_broken_scenario_file_is_one_line(created: Place) -> None:
    scenario = created.cwd / "mine.yaml"
    scenario.write_text("new:\n  errorRat: 0.3\n")
    line = one_error_line(created.run(*DEPLOY, "--version", "v2.0.0", "--scenario", str(scenario)), 2)
    assert "new.errorRat" in line and "did you mean 'errorRate'" in line


def test_simulate_with_a_bad_scenario_keeps_the_existing_session(created: Place) -> None:
    """simulate starts a fresh session, but only once its input is good: the session of the
    stack (checked by the next test) survives a typo in --scenario."""
    assert STACK == "production", "simulate runs on the production stack"
    line = one_error_line(created.run("simulate", "--scenario", str(created.cwd / "missing.yaml")), 2)
    assert "missing.yaml" in line


def test_bad_input_changed_nothing(created: Place) -> None:
    """After every bad command above: the stack history is its first two updates, no deployment."""
    history = created.run("--json", "history", "--stack", STACK).json()
    assert history["deployments"] == []
    assert [(e["version"], e["result"]) for e in history["stack_history"]] == [
        (2, "succeeded"),
        (1, "succeeded"),
    ]
