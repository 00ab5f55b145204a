"""``rfs-deploy plan`` with an explicit canary step list, in the sandbox, as a user runs it."""

from __future__ import annotations

from cli_helpers import SERVICE, STACK, Place, one_error_line

PLAN = ("plan", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0", "--strategy", "canary")
STEPS = "strategy.steps=[{setWeight: 10}, {analyze: 5m}, {pause: {}}, {setWeight: 50}, {pause: 90s}]"


def test_plan_shows_a_step_list_with_its_gate(place: Place) -> None:
    done = place.run(*PLAN, "--set", STEPS)
    assert done.code == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    described = [line.split(". ", 1)[1] for line in lines if line[:3].strip().rstrip(".").isdigit()]
    # after deploy, wait and validate: the list as written, then the usual 100 % and its analysis;
    # the service warms up for 300 s, so its idle slot starts at full size (docs/sizing.md)
    assert described[0] == "deploy v2.0.0 to the idle slot (10 instances)"
    assert described[3:] == [
        "set weight 10%",
        "analyze for 300s against the live slot",
        "pause until promoted (canary at 10 %)",
        "set weight 50%",
        "wait 90s (pause, canary at 50 %)",
        "switch all traffic to the new slot",
        "analyze for 60s",
        "promote the new slot to live",
        "scale the old slot to zero",
    ], described


def test_plan_json_keeps_the_list_as_written(place: Place) -> None:
    done = place.run("--json", *PLAN, "--set", STEPS)
    assert done.code == 0, done.stderr
    payload = done.json()
    assert payload["strategy"]["steps"] == [
        {"setWeight": 10},
        {"analyze": {"duration": 300}},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {"duration": 90}},
    ]
    kinds = [step["kind"] for step in payload["steps"]]
    assert kinds.count("gate") == 1 and kinds.index("gate") == kinds.index("set-weight") + 2


def test_a_bad_step_list_is_one_line_naming_the_step(place: Place) -> None:
    done = place.run(*PLAN, "--set", "strategy.steps=[{setWeight: 50}, {analyze: 5m}, {setWeight: 20}]")
    line = one_error_line(done, 2)
    assert (
        "strategy.steps" in line and "steps[2]: setWeight 20 is not above the weight before it (50)" in line
    )
