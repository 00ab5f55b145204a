"""The journal: update-message tags and reading where a deployment stood from stack history."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rfs_deploy.config.model import ReleaseState, SlotState
from rfs_deploy.drive import journal
from rfs_deploy.drive.journal import JournalTag, decode, encode, parse
from rfs_deploy.drive.protocols import HistoryEntry
from rfs_deploy.errors import UnknownService, UnknownVersion

# --------------------------------------------------------------------------- encode / decode


def tag(**changes: object) -> JournalTag:
    fields: dict[str, object] = dict(
        deployment_id="ab12cd34",
        service="api-service",
        step=2,
        total=9,
        kind="set-weight",
        phase="step",
        version="v2.0.0",
        strategy="canary",
        checkpoint=41,
    )
    fields.update(changes)
    return JournalTag(**fields)  # type: ignore[arg-type]


def test_encode_shape_is_compact_and_one_based_in_text() -> None:
    message = encode(tag(), "set weight 30%")
    assert message == (
        "rfs-deploy[dep=ab12cd34 svc=api-service ver=v2.0.0 strat=canary step=3/9 "
        "kind=set-weight phase=step cp=41] set weight 30%"
    )


@pytest.mark.parametrize(
    "t",
    [
        tag(),
        tag(checkpoint=None),
        tag(step=0, total=1, kind="deploy-idle"),
        tag(phase="rollback", kind="rollback", step=1, total=3),
        tag(phase="abort", kind="abort", step=0, total=3),
        tag(phase="rollback", kind="rollback", step=0, total=3, wait=True),
        tag(phase="abort", kind=journal.RESTORED, step=2, total=3),
        tag(phase="resume", step=8),
        tag(phase="done", kind="done", step=8),
        tag(version="2024.06.01 build=7 [rc] 100%", strategy="blue-green"),
        tag(service="web", version="vé-ü", deployment_id="x"),
        tag(checkpoint=0),
    ],
)
def test_round_trip(t: JournalTag) -> None:
    message = encode(t, "human text")
    assert decode(message) == t
    assert parse(message) == (t, "human text")


_token = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20)


@given(
    dep=_token,
    svc=_token,
    ver=_token,
    strat=_token,
    kind=_token,
    total=st.integers(1, 500),
    data=st.data(),
    phase=st.sampled_from(journal.PHASES),
    cp=st.none() | st.integers(0, 10**6),
    text=st.text(max_size=80),
)
def test_round_trip_any_values(
    dep: str,
    svc: str,
    ver: str,
    strat: str,
    kind: str,
    total: int,
    data: st.DataObject,
    phase: journal.Phase,
    cp: int | None,
    text: str,
) -> None:
    step = data.draw(st.integers(0, total - 1))
    t = JournalTag(dep, svc, step, total, kind, phase, ver, strat, cp)
    message = encode(t, text)
    assert "\n" not in message
    assert parse(message) == (t, " ".join(text.split()))


def test_text_is_squeezed_onto_one_line_and_may_be_empty() -> None:
    assert parse(encode(tag(), "  restore version 7:\n  error rate 9%  ")) == (
        tag(),
        "restore version 7: error rate 9%",
    )
    assert encode(tag(), "").endswith("cp=41]")
    assert parse(encode(tag(), "")) == (tag(), "")


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    message = encode(tag(), "x").replace(" cp=41]", " cp=41 zone=eu-1]")
    assert decode(message) == tag()


@pytest.mark.parametrize(
    "message",
    [
        "",
        "manual deploy from laptop",
        "Update stack via automation",
        "rfs-deploy",
        "rfs-deploy[]",
        "rfs-deploy[dep=ab12cd34]",
        "rfs-deploy [dep=a svc=b ver=c strat=d step=1/2 kind=e phase=step]",
        "xrfs-deploy[dep=a svc=b ver=c strat=d step=1/2 kind=e phase=step]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=0/2 kind=e phase=step]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=3/2 kind=e phase=step]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=x/2 kind=e phase=step]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=1/2 kind=e phase=launch]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=1/2 kind=e phase=step cp=-1]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=1/2 kind=e phase=step cp=x]",
        "rfs-deploy[dep=a dep=b svc=b ver=c strat=d step=1/2 kind=e phase=step]",
        "rfs-deploy[dep= svc=b ver=c strat=d step=1/2 kind=e phase=step]",
        "rfs-deploy[dep=a  svc=b ver=c strat=d step=1/2 kind=e phase=step]",
        "rfs-deploy[dep=a svc=b ver=c strat=d step=1/2 kind=e phase=step]trailing",
        "rfs-deploy[dep=a svc=b\nver=c strat=d step=1/2 kind=e phase=step]",
    ],
)
def test_foreign_or_malformed_messages_decode_to_none(message: str) -> None:
    assert decode(message) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"step": 9},
        {"step": -1},
        {"total": 0, "step": 0},
        {"phase": "launch"},
        {"deployment_id": ""},
        {"checkpoint": -2},
    ],
)
def test_invalid_tags_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="journal tag"):
        tag(**changes)


def test_deployment_ids_are_short_random_hex() -> None:
    ids = {journal.new_deployment_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)


# --------------------------------------------------------------------------- synthetic histories


def release(version: str = "v1.0.0", weight: int = 0, new: str | None = None) -> dict[str, ReleaseState]:
    """api-service with ``weight`` percent on green running ``new`` (blue runs ``version``)."""
    green = SlotState(version=new, capacity=10) if new else SlotState()
    state = ReleaseState(
        live="blue",
        blue=SlotState(version=version, capacity=10),
        green=green,
        weights={"blue": 100 - weight, "green": weight},
    )
    return {"api-service": state}


BASE = release()


class History:
    """Builds a history oldest first; ``entries`` gives it newest first, as a backend does."""

    def __init__(self) -> None:
        self._entries: list[HistoryEntry] = []

    def add(self, message: str, result: str = "succeeded", rel: object = BASE) -> int:
        version = len(self._entries) + 1
        end = None if result == "in-progress" else 1000.0 + version * 10 + 5
        entry = HistoryEntry(version, message, result, 1000.0 + version * 10, end, rel)  # type: ignore[arg-type]
        self._entries.append(entry)
        return version

    def step(self, dep: str, index: int, total: int = 5, result: str = "succeeded", **kw: object) -> int:
        kw.setdefault("checkpoint", None)
        t = tag(deployment_id=dep, step=index, total=total, **kw)
        return self.add(
            encode(t, f"step {index + 1}"), result, release(weight=10 * (index + 1), new="v2.0.0")
        )

    def rollback(
        self, dep: str, attempt: int, result: str = "succeeded", phase: str = "rollback", **kw: object
    ) -> int:
        kw.setdefault("checkpoint", None)
        t = tag(deployment_id=dep, step=attempt, total=3, kind=phase, phase=phase, **kw)
        return self.add(encode(t, "restore"), result, BASE)

    @property
    def entries(self) -> list[HistoryEntry]:
        return list(reversed(self._entries))


def test_no_deployment_in_history() -> None:
    h = History()
    assert journal.latest_deployment(h.entries) is None
    h.add("initial pulumi up")
    h.add("hand-made change")
    assert journal.latest_deployment(h.entries) is None
    assert journal.find_open_deployment(h.entries) is None


def test_finished_when_the_plans_last_change_step_succeeded() -> None:
    h = History()
    initial = h.add("initial pulumi up")
    for i in range(5):
        h.step("dep1", i, total=5, checkpoint=initial)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None
    assert (dep.status, dep.finished, dep.open) == ("completed", True, False)
    assert dep.last_completed_step == 4
    assert dep.checkpoint == journal.Checkpoint(initial, BASE)
    assert journal.find_open_deployment(h.entries) is None


def test_finished_by_an_explicit_done_update() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0, total=3)
    h.step("dep1", 1, total=3)
    h.add(encode(tag(deployment_id="dep1", step=2, total=3, phase="done", kind="done"), "done"))
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "completed"
    assert dep.last_completed_step == 2


def test_open_mid_plan_says_where_to_resume() -> None:
    h = History()
    initial = h.add("initial")
    h.step("dep1", 0, total=9)
    h.step("dep1", 1, total=9)
    last = h.step("dep1", 2, total=9)
    dep = journal.find_open_deployment(h.entries)
    assert dep is not None
    assert (dep.deployment_id, dep.service, dep.version, dep.strategy) == (
        "dep1",
        "api-service",
        "v2.0.0",
        "canary",
    )
    assert (dep.status, dep.interrupted, dep.total_steps) == ("in-progress", False, 9)
    assert (dep.last_completed_step, dep.next_step) == (2, 3)
    assert dep.checkpoint is not None and dep.checkpoint.version == initial
    assert dep.checkpoint.release_for("api-service") == BASE["api-service"]
    assert dep.progress is not None and dep.progress.version == last
    assert dep.progress.release_for("api-service").weights["green"] == 30
    assert dep.started_at == dep.entries[-1].start_time
    assert [e.version for e in dep.entries] == [4, 3, 2]


@pytest.mark.parametrize("result", ["in-progress", "failed"])
def test_crashed_or_failed_during_an_update(result: str) -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    good = h.step("dep1", 1)
    h.step("dep1", 2, result=result)
    dep = journal.find_open_deployment(h.entries)
    assert dep is not None
    assert dep.interrupted and dep.newest.result == result
    assert dep.last_completed_step == 1 and dep.next_step == 2
    assert dep.progress is not None and dep.progress.version == good


def test_first_update_failed_leaves_nothing_completed() -> None:
    h = History()
    initial = h.add("initial")
    h.step("dep1", 0, result="failed")
    dep = journal.find_open_deployment(h.entries)
    assert dep is not None
    assert dep.last_completed_step is None and dep.next_step == 0 and dep.progress is None
    assert dep.checkpoint is not None and dep.checkpoint.version == initial


@pytest.mark.parametrize(
    ("phase", "result", "status"),
    [
        ("rollback", "failed", "rolling-back"),
        ("rollback", "in-progress", "rolling-back"),
        ("rollback", "succeeded", "rolled-back"),
        ("abort", "failed", "aborting"),
        ("abort", "succeeded", "aborted"),
    ],
)
def test_rollback_and_abort(phase: str, result: str, status: str) -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    h.step("dep1", 1)
    h.rollback("dep1", 0, result=result, phase=phase)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == status
    assert dep.finished == (result == "succeeded")
    assert dep.total_steps == 5  # from the step tags, not from the rollback attempts
    assert dep.last_completed_step == 1


def test_a_later_rollback_attempt_that_succeeds_finishes_the_deployment() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    h.rollback("dep1", 0, result="failed")
    h.rollback("dep1", 1, result="succeeded")
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "rolled-back"


@pytest.mark.parametrize("phase", ["rollback", "abort"])
def test_a_restore_is_finished_only_by_its_confirmation(phase: str) -> None:
    """The restoring update (``wait=1``) succeeded but the world was not yet seen back (a kill
    during the refresh back): the deployment stays open until the ``restored`` update."""
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    h.rollback("dep1", 0, phase=phase, wait=True)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.open and dep.awaiting_world
    assert dep.status == ("rolling-back" if phase == "rollback" else "aborting")
    assert journal.find_open_deployment(h.entries, "api-service") == dep

    t = tag(deployment_id="dep1", step=0, total=3, kind=journal.RESTORED, phase=phase, checkpoint=None)
    h.add(encode(t, "restored"), "succeeded", BASE)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.finished and not dep.awaiting_world
    assert dep.status == ("rolled-back" if phase == "rollback" else "aborted")


def test_a_failed_confirmation_keeps_the_restore_open() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    h.rollback("dep1", 0, wait=True)
    t = tag(deployment_id="dep1", step=0, total=3, kind=journal.RESTORED, phase="rollback", checkpoint=None)
    h.add(encode(t, "restored"), "failed", BASE)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "rolling-back" and not dep.awaiting_world


@pytest.mark.parametrize("phase", ["abort", "resume", "step"])
def test_a_refused_takeover_after_the_end_does_not_reopen_a_deployment(phase: str) -> None:
    """An abort or resume that decided while the deployment was open, refused by the program's
    compare-and-swap once the owner finished it: its failed update changed nothing."""
    h = History()
    h.add("initial")
    h.step("dep1", 0, total=2, owner="ci-a/100")
    h.step("dep1", 1, total=2, owner="ci-a/100")  # the last step: completed
    late = tag(
        deployment_id="dep1", step=0, total=2, kind=phase, phase=phase, checkpoint=None, owner="ci-b/7"
    )
    h.add(encode(late, "refused"), "failed", BASE)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "completed" and not dep.open
    assert [e.version for e in dep.entries] == [3, 2]


def test_a_refused_promote_of_another_run_in_the_same_process_does_not_reopen_it() -> None:
    """Two drivers in one process (the Python API with two stack objects) promote one paused
    canary: the first completes it, the second's step is refused by the compare-and-swap. Same
    host and pid, another run token: another owner, so its failed update changed nothing."""
    h = History()
    h.add("initial")
    h.step("dep1", 0, total=3, owner="ci-a/100+aaaaaa")
    h.step("dep1", 1, total=3, owner="ci-a/100+bbbbbb")
    h.step("dep1", 2, total=3, owner="ci-a/100+bbbbbb")  # the last step: completed
    late = tag(deployment_id="dep1", step=2, total=3, checkpoint=None, owner="ci-a/100+cccccc")
    h.add(encode(late, "refused"), "failed", BASE)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "completed" and not dep.open
    assert [e.version for e in dep.entries] == [4, 3, 2]


def test_an_owner_names_its_process_and_its_run() -> None:
    from rfs_deploy.journal_tags import new_run, owner_process, this_owner

    runs = {new_run() for _ in range(20)}
    assert len(runs) == 20
    owner = this_owner(runs.pop())
    assert owner.startswith(this_owner() + "+")
    assert owner_process(owner) == owner_process(this_owner()) == tuple(this_owner().rsplit("/", 1))
    assert owner_process("ci-a/100") == ("ci-a", "100")


@pytest.mark.parametrize("owner", ["ci-a/100", None])
@pytest.mark.parametrize("result", ["failed", "in-progress"])
def test_a_failed_rollback_after_the_last_step_keeps_the_deployment_open(
    owner: str | None, result: str
) -> None:
    """The last change applied, its check failed, the owner's own rollback failed (or was
    killed): open, whatever the last step's status alone would say. Untagged owners too."""
    h = History()
    h.add("initial")
    h.step("dep1", 0, total=2, owner=owner)
    h.step("dep1", 1, total=2, owner=owner)
    h.rollback("dep1", 0, result=result, owner=owner)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.status == "rolling-back" and dep.open


def test_only_restoring_updates_wait_and_a_bad_wait_value_is_foreign() -> None:
    with pytest.raises(ValueError, match="only rollback and abort"):
        tag(wait=True)
    message = encode(tag(phase="rollback", kind="rollback", step=0, total=3, wait=True), "x")
    assert " wait=1]" in message
    assert decode(message.replace("wait=1", "wait=yes")) is None


def test_several_deployments_the_newest_counts_and_its_checkpoint_is_the_previous_end() -> None:
    h = History()
    h.add("initial")
    for i in range(5):
        end_of_first = h.step("dep1", i)
    h.add("hand-run pulumi up", result="failed")
    h.step("dep2", 0)
    dep = journal.find_open_deployment(h.entries)
    assert dep is not None and dep.deployment_id == "dep2"
    assert dep.checkpoint is not None and dep.checkpoint.version == end_of_first
    first = journal.latest_deployment([e for e in h.entries if "dep2" not in e.message])
    assert first is not None and first.deployment_id == "dep1" and first.finished


def test_service_filter_and_foreign_updates_after_the_deployment() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    later = h.add(encode(tag(deployment_id="dep9", service="web", step=0, total=2), "web"))
    manual = h.add("hand-run pulumi up after the crash")
    api = journal.find_open_deployment(h.entries, service="api-service")
    assert api is not None and api.deployment_id == "dep1"
    assert api.foreign_after == (manual, later)
    web = journal.latest_deployment(h.entries, service="web")
    assert web is not None and web.deployment_id == "dep9" and web.foreign_after == (manual,)
    assert journal.latest_deployment(h.entries, service="nope") is None


def test_tagged_checkpoint_wins_over_inference() -> None:
    h = History()
    chosen = h.add("initial")
    h.add("hand-made change")
    h.step("dep1", 0, checkpoint=chosen)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.checkpoint is not None and dep.checkpoint.version == chosen


def test_tagged_checkpoint_missing_from_history_read_gives_none() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0, checkpoint=1)
    entries = h.entries[:1]  # history read with limit=1
    dep = journal.latest_deployment(entries)
    assert dep is not None and dep.checkpoint is None


def test_inferred_checkpoint_skips_failed_releaseless_and_mid_deployment_entries() -> None:
    h = History()
    good = h.add("initial")
    h.step("old", 0)  # an abandoned deployment, mid-plan
    h.add("hand-made stack without release", rel=None)
    h.add("failed hand-run up", result="failed")
    h.step("dep1", 0)
    dep = journal.latest_deployment(h.entries)
    assert dep is not None and dep.checkpoint is not None and dep.checkpoint.version == good


def test_order_of_the_input_does_not_matter() -> None:
    h = History()
    h.add("initial")
    h.step("dep1", 0)
    h.step("dep1", 1)
    assert journal.latest_deployment(h.entries) == journal.latest_deployment(list(reversed(h.entries)))


# --------------------------------------------------------------------------- checkpoints


def test_last_good_checkpoint() -> None:
    h = History()
    first = h.add("initial")
    for i in range(5):
        done = h.step("dep1", i)
    h.step("dep2", 0)
    assert journal.last_good_checkpoint(h.entries) == journal.Checkpoint(done, h.entries[1].release)  # type: ignore[arg-type]
    assert journal.last_good_checkpoint(h.entries, before_version=done) == journal.Checkpoint(first, BASE)
    assert journal.last_good_checkpoint(h.entries, before_version=first) is None
    assert journal.last_good_checkpoint([]) is None


def test_checkpoint_at_a_version() -> None:
    h = History()
    h.add("initial")
    h.add("failed", result="failed")
    h.add("no release", rel=None)
    assert journal.checkpoint_at(h.entries, 1) == journal.Checkpoint(1, BASE)
    with pytest.raises(UnknownVersion, match=r"no version 9 \(versions run up to 3\)"):
        journal.checkpoint_at(h.entries, 9)
    with pytest.raises(UnknownVersion, match=r"did not succeed \(failed\)"):
        journal.checkpoint_at(h.entries, 2)
    with pytest.raises(UnknownVersion, match="without an rfs-deploy release state"):
        journal.checkpoint_at(h.entries, 3)
    with pytest.raises(UnknownVersion, match="the stack has no history"):
        journal.checkpoint_at([], 1)


def test_checkpoint_at_a_mid_deployment_version_is_refused() -> None:
    h = History()
    first = h.add("initial")
    middle = h.step("dep1", 0)
    h.step("dep1", 1)
    with pytest.raises(UnknownVersion) as refused:
        journal.checkpoint_at(h.entries, middle)
    text = str(refused.value)
    assert text.startswith(f"stack version {middle} is step 1/")
    assert "of deployment dep1, not a resting state" in text
    assert text.endswith(f"the resting state before it is version {first}")


def test_checkpoint_release_for_an_unknown_service() -> None:
    with pytest.raises(UnknownService, match="no release state for service 'web'"):
        journal.Checkpoint(3, BASE).release_for("web")
