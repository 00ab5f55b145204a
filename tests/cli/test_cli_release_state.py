"""`rfs-deploy up` keeps the live release state; `--release-from-config` applies the checkout's.

The checkout's stack file says v1.0.0 on blue; after a release of v2.0.0 that copy is stale.
"""

from __future__ import annotations

from cli_helpers import SERVICE, STACK, Place


def live_version(place: Place) -> str:
    plan = place.run("--json", "plan", "--stack", STACK, "--service", SERVICE, "--version", "v1.0.0")
    if plan.code == 2 and "already live" in plan.stderr:
        return "v1.0.0"
    assert plan.code == 0, plan.stderr
    state = plan.json()["from"]
    return str(state[state["live"]]["version"])


def test_up_keeps_the_live_release_and_release_from_config_takes_the_checkouts(place: Place) -> None:
    deployed = place.run("deploy", "--stack", STACK, "--service", SERVICE, "--version", "v2.0.0",
                         "--strategy", "blue-green")  # fmt: skip
    assert deployed.code == 0, deployed.stderr[-800:]
    assert live_version(place) == "v2.0.0"

    kept = place.run("--json", "up", "--stack", STACK)
    assert kept.code == 0, kept.stderr
    assert live_version(place) == "v2.0.0"  # the checkout's v1.0.0 did not come back

    taken = place.run("--json", "up", "--stack", STACK, "--release-from-config")
    assert taken.code == 0, taken.stderr
    assert live_version(place) == "v1.0.0"
    newest = place.run("--json", "history", "--stack", STACK, "--limit", "1").json()["stack_history"][0]
    assert newest["message"].startswith("rfs-deploy[release=config]")
