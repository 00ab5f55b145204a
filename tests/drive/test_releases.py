"""The release state's source of truth (rfs_deploy.releases) and the journal's view of races and
owners: pure functions, tables of cases."""

from __future__ import annotations

import os
import socket
import time

import pytest

from rfs_deploy import releases
from rfs_deploy.config.model import ReleaseState
from rfs_deploy.drive import journal
from rfs_deploy.drive.protocols import HistoryEntry

V1 = ReleaseState.model_validate({"live": "blue", "blue": {"version": "v1", "capacity": 2}})
V2 = ReleaseState.model_validate(
    {
        "live": "green",
        "blue": {"version": "v1", "capacity": 0},
        "green": {"version": "v2", "capacity": 2},
        "weights": {"blue": 0, "green": 100},
    }
)
HALF = V1.evolve(green={"version": "v2", "capacity": 2}, weights={"blue": 80, "green": 20})


def tag(dep: str, svc: str, step: int = 0, total: int = 5, phase: journal.Phase = "step", cp: int = 1) -> str:
    t = journal.JournalTag(dep, svc, step, total, "set-weight", phase, "v2", "canary", checkpoint=cp)
    return journal.encode(t, "set weight")


def entry(
    version: int, message: str, release: dict[str, ReleaseState], result: str = "succeeded"
) -> HistoryEntry:
    return HistoryEntry(version, message, result, float(version), float(version), release)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the program's rule


@pytest.mark.parametrize(
    ("owner", "expected_a", "expected_b", "warned"),
    [
        (None, V2, V1, ["a"]),  # a plain `pulumi up` from a stale checkout keeps both live states
        ("a", V1, V1, []),  # the driver releasing a: a from the config, b kept
        ("b", V2, V1, ["a"]),  # the driver releasing b with a stale a in its config: a kept
        (releases.ALL, V1, V1, []),  # `rfs-deploy up --release-from-config`
    ],
)
def test_resolve_takes_from_the_config_only_what_the_owner_releases(
    owner: str | None, expected_a: ReleaseState, expected_b: ReleaseState, warned: list[str]
) -> None:
    config = {"a": V1, "b": V1}
    live = {"a": V2, "b": V1}
    got = releases.resolve(config, live, owner, stack="prod")
    assert got.release == {"a": expected_a, "b": expected_b}
    assert [w.split(" ", 1)[0] for w in got.warnings] == [f"rfs-deploy:release.{s}" for s in warned]
    for warning in got.warnings:
        assert (
            "keeping the live one" in warning and "--release-from-config" in warning and "\n" not in warning
        )


def test_a_new_stack_or_a_new_service_takes_the_config() -> None:
    assert releases.resolve({"a": V1}, None, None).release == {"a": V1}
    assert releases.resolve({"a": V2, "b": V1}, {"a": V2}, None).release == {"a": V2, "b": V1}


def test_resolve_is_a_compare_and_swap_on_the_expected_live_state() -> None:
    live = {"a": HALF}
    ok = releases.resolve({"a": V2}, live, "a", {"a": releases.digest(HALF)})
    assert ok.release == {"a": V2}
    with pytest.raises(releases.ReleaseConflict, match=releases.CONFLICT_MARK) as caught:
        releases.resolve({"a": V2}, live, "a", {"a": releases.digest(V1)})
    assert "nothing was changed" in str(caught.value)
    with pytest.raises(releases.ReleaseConflict):
        releases.resolve({"a": V2}, None, "a", {"a": releases.digest(V1)})  # expected a state: none
    assert releases.resolve({"a": V1}, None, "a", {"a": releases.ABSENT}).release == {"a": V1}


def test_owner_of_messages_and_the_update_environment() -> None:
    assert releases.owner_of(tag("d1", "api")) == "api"
    assert releases.owner_of("pulumi up by hand") is None
    assert releases.owned_message("fix", wrote_release=True) == (
        f"{releases.TAKE_ALL_MESSAGE} fix",
        releases.ALL,
    )
    assert releases.owned_message("fix", wrote_release=False) == ("fix", None)
    assert releases.owned_message(tag("d1", "api"), wrote_release=True)[1] == "api"
    env = releases.update_environment("api", {"api": V1})
    assert releases.environment_owner(env) == ("api", {"api": releases.digest(V1)})
    assert releases.environment_owner(releases.update_environment(None, None)) == (None, {})


def test_the_release_output_round_trips_with_the_engines_floats() -> None:
    as_engine_returns = {"a": {**V2.to_config(), "weights": {"blue": 0.0, "green": 100.0}}}
    assert releases.parse_release_output(as_engine_returns) == {"a": V2}
    assert releases.parse_release_output(None) is None
    assert releases.parse_release_output({"a": {"weights": {"blue": 1}}}) is None


def test_effective_history_shows_what_each_update_applied() -> None:
    entries = [
        entry(1, "pulumi up: create", {"a": V1, "b": V1}),
        entry(2, tag("d1", "a", cp=1), {"a": HALF, "b": V1}),
        entry(3, "pulumi up from a stale checkout", {"a": V1, "b": V2}),  # kept: a HALF, b V1
        entry(4, tag("d2", "b", cp=3), {"a": V1, "b": V2}),  # b's driver, with a stale a
        entry(5, tag("d1", "a", step=1, cp=1), {"a": V2, "b": V1}, result="failed"),
        entry(6, f"{releases.TAKE_ALL_MESSAGE} by hand", {"a": V1, "b": V1}),
    ]
    got = {e.version: e.release for e in releases.effective_history(list(reversed(entries)))}
    assert got[1] == {"a": V1, "b": V1}
    assert got[2] == {"a": HALF, "b": V1}
    assert got[3] == {"a": HALF, "b": V1}
    assert got[4] == {"a": HALF, "b": V2}
    assert got[5] == {"a": V2, "b": V2}  # what it tried; the next update starts from version 4
    assert got[6] == {"a": V1, "b": V1}


# --------------------------------------------------------------------------- journal


def test_a_deployment_that_lost_a_race_is_not_open() -> None:
    """Two deployments of `a` started from checkpoint 1; d1's first update won the lock, d2's
    was refused by the program's compare-and-swap: d2 changed nothing and leaves no zombie."""
    history = [
        entry(3, tag("d2", "a", cp=1), {"a": HALF}, result="failed"),
        entry(2, tag("d1", "a", cp=1), {"a": HALF}),
        entry(1, "create", {"a": V1}),
    ]
    found = journal.find_open_deployment(history, "a")
    assert found is not None and found.deployment_id == "d1"
    # a first update that failed on its own (no rival) stays open: it may have half-applied
    alone = [entry(2, tag("d2", "a", cp=1), {"a": HALF}, result="failed"), entry(1, "create", {"a": V1})]
    found = journal.find_open_deployment(alone, "a")
    assert found is not None and found.deployment_id == "d2" and found.interrupted


def test_deployments_of_two_services_are_open_side_by_side() -> None:
    history = [
        entry(3, tag("d2", "b", cp=1), {"a": HALF, "b": HALF}),
        entry(2, tag("d1", "a", cp=1), {"a": HALF, "b": V1}),
        entry(1, "create", {"a": V1, "b": V1}),
    ]
    assert [d.deployment_id for d in journal.open_deployments(history)] == ["d2", "d1"]
    a = journal.find_open_deployment(history, "a")
    assert a is not None and a.deployment_id == "d1" and a.checkpoint is not None
    assert a.checkpoint.release_for("a") == V1


def test_a_bare_rollback_after_a_rollback_targets_the_same_release() -> None:
    rollback = journal.JournalTag(
        "r1", "a", 0, 3, "rollback", "rollback", "v1", journal.ROLLBACK_STRATEGY, checkpoint=1
    )
    history = [
        entry(4, journal.encode(rollback, "restore"), {"a": V1}),
        entry(3, tag("d1", "a", step=4, cp=1), {"a": V2}),
        entry(2, tag("d1", "a", cp=1), {"a": HALF}),
        entry(1, "create", {"a": V1}),
    ]
    latest = journal.latest_release(history, "a")
    assert latest is not None and latest.deployment_id == "d1"


def test_owner_tags_round_trip_and_liveness() -> None:
    t = journal.JournalTag(
        "d1", "a", 0, 5, "set-weight", "step", "v2", "canary", owner="ci-7/4242", lease=123
    )
    back = journal.decode(journal.encode(t, "x"))
    assert back == t
    assert journal.owner_alive(
        journal.JournalTag("d", "a", 0, 1, "k", "step", "v", "s", owner=journal.this_owner())
    )
    here = socket.gethostname()
    dead = _dead_pid()
    assert not journal.owner_alive(
        journal.JournalTag("d", "a", 0, 1, "k", "step", "v", "s", owner=f"{here}/{dead}")
    )
    far = journal.JournalTag(
        "d", "a", 0, 1, "k", "step", "v", "s", owner="elsewhere/1", lease=int(time.time()) + 60
    )
    assert journal.owner_alive(far)
    assert not journal.owner_alive(far, now=time.time() + 120)
    assert not journal.owner_alive(journal.JournalTag("d", "a", 0, 1, "k", "step", "v", "s"))


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
