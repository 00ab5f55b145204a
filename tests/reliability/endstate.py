"""What a sandbox session really holds after a crash and a recovery: config, journal, load balancer, fleet.

:func:`inspect_session` opens a saved session (moto rebuilt from it) and reports the release state
in the stack config, the journal's view of the newest deployment and its checkpoint, and the
reality: production listener weights by slot, test listener slot, listener rules, and the
versions the instances of each slot run. :func:`classify` compares that with the release state a
full promotion leaves and the pre-deployment checkpoint: ``promoted``, ``rolled-back`` or
``mixed`` (with the reason). Run as ``python endstate.py DIR...`` it prints one JSON line per
state directory, so callers need not host moto themselves (it is process-global).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rfs_deploy.config.model import SLOTS, ReleaseState  # noqa: E402

STACK = "production"
SERVICE = "api-service"


def history_entries(state_dir: Path, stack: str = STACK) -> list[Any]:
    """Stack history from a saved session without starting moto (newest first)."""
    from rfs_deploy.drive.protocols import HistoryEntry
    from rfs_deploy.sim.sandbox import STATE_FILE
    from rfs_deploy.sim.session_lock import session_directory

    path = session_directory(state_dir, stack) / STATE_FILE
    data = json.loads(path.read_text())
    from rfs_deploy.config.loading import parse_release

    entries = []
    for raw in reversed(data["backend"]["history"]):
        release = raw.get("release")
        parsed = {n: parse_release(n, v) for n, v in release.items()} if isinstance(release, dict) else None
        result = "failed" if raw["result"] == "in-progress" else raw["result"]  # as a new process sees it
        entries.append(
            HistoryEntry(
                version=int(raw["version"]),
                message=str(raw["message"]),
                result=result,
                start_time=float(raw["startTime"]),
                end_time=None if raw.get("endTime") is None else float(raw["endTime"]),
                release=parsed,
            )
        )
    return entries


def journal_view(history: list[Any], service: str = SERVICE) -> dict[str, Any]:
    """The newest deployment as the journal reads it, and the checkpoint a restore would use."""
    from rfs_deploy.drive import journal

    found = journal.latest_deployment(history, service)
    if found is None:
        good = journal.last_good_checkpoint(history)
        return {
            "deployment": None,
            "status": None,
            "next_step": None,
            "checkpoint": None if good is None else good.version,
        }
    cp = found.checkpoint
    return {
        "deployment": found.deployment_id,
        "status": found.status,
        "next_step": found.next_step,
        "checkpoint": None if cp is None else cp.version,
        "checkpoint_release": None if cp is None else cp.release_for(service).to_config(),
    }


def inspect_session(state_dir: Path, stack: str = STACK, service: str = SERVICE) -> dict[str, Any]:
    """Config, journal and reality of the sandbox session kept under ``state_dir``."""
    from rfs_deploy.outputs import parse_outputs
    from rfs_deploy.sim.sandbox import Sandbox
    from rfs_deploy.sim.session_lock import session_directory

    box = Sandbox.open(session_dir=session_directory(state_dir, stack))
    try:
        release = box.backend.read_config().release[service]
        out = parse_outputs(box.backend.outputs(), service)
        traffic = box.adapters.traffic
        by_arn = {out.slot(s).target_group_arn: s for s in SLOTS}
        weights = {by_arn.get(a, a): w for a, w in traffic.forward_weights(out.listener_arn).items() if w}
        test_weights = traffic.forward_weights(out.test_listener_arn)
        test = sorted(by_arn.get(a, a) for a, w in test_weights.items() if w)
        instances = {
            slot: dict(Counter(i.version or "?" for i in box.world.fleet.of_group(out.slot(slot).asg_name)))
            for slot in SLOTS
        }
        history = box.backend.history()
        return {
            "config": release.to_config(),
            "weights": weights,
            "test": test,
            "rules": len(traffic.rules(out.listener_arn)),
            "instances": instances,
            "journal": journal_view(history, service),
            "updates": len(history),
        }
    finally:
        box.close()


def matches(release: ReleaseState, seen: dict[str, Any]) -> str | None:
    """None when config and reality both hold ``release``; else what differs (one line)."""
    if seen["config"] != release.to_config():
        return "stack config differs"
    want = {s: release.weights[s] for s in SLOTS if release.weights[s] > 0}
    total = sum(seen["weights"].values()) or 1
    have = {s: round(100 * w / total) for s, w in seen["weights"].items()}
    if have != want:
        return f"listener weights {have}, expected {want}"
    if seen["test"] != [release.idle]:
        return f"test listener on {seen['test']}, expected {release.idle}"
    if (seen["rules"] > 0) != (release.variants is not None):
        return f"{seen['rules']} listener rules"
    for slot in SLOTS:
        state = release.slot(slot)
        expected = {state.version: state.capacity} if state.capacity else {}
        if seen["instances"][slot] != expected:
            return f"{slot} instances {seen['instances'][slot]}, expected {expected}"
    return None


def classify(seen: dict[str, Any], promoted: ReleaseState, start: ReleaseState) -> tuple[str, str]:
    """(``promoted`` | ``rolled-back`` | ``mixed``, detail)."""
    to_promoted = matches(promoted, seen)
    if to_promoted is None:
        return "promoted", ""
    to_start = matches(start, seen)
    if to_start is None:
        return "rolled-back", ""
    return "mixed", f"vs promoted: {to_promoted}; vs checkpoint: {to_start}"


def main(argv: list[str]) -> int:
    for directory in argv:
        try:
            print(json.dumps({"dir": directory, **inspect_session(Path(directory))}), flush=True)
        except Exception as exc:  # one bad session must not hide the others
            print(json.dumps({"dir": directory, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
