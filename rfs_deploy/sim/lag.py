"""ELBv2 propagation lag: a listener change that is not visible yet.

ELBv2 is eventually consistent: after ModifyListener or a rule change, DescribeListeners and
DescribeRules (and the load balancer nodes routing requests) may show the old configuration for
a while. With the scenario's ``loadBalancer.propagationDelay`` (seconds of virtual time) the
sandbox plays that: the applier tells :class:`ListenerLag` before it changes a listener or one of
its rules, the lag keeps what was visible until then, and for ``propagationDelay`` seconds after
the newest change the gap handlers answer the describe calls, and the physics routes traffic,
from that snapshot. A change made while an older one is still propagating restarts the wait; the
intermediate state is never seen, as with a real load balancer that converges on the last one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: What a listener looks like to a reader: its default actions and its rules.
Snapshot = dict[str, list[dict[str, Any]]]


@dataclass
class _Pending:
    changed_at: float
    visible: Snapshot


class ListenerLag:
    """Old listener configurations still visible, per listener ARN (see the module docstring)."""

    def __init__(self, delay: float, read: Callable[[str], Snapshot]) -> None:
        self.delay = float(delay)
        self._read = read
        self._pending: dict[str, _Pending] = {}

    def changing(self, listener_arn: str, now: float) -> None:
        """Called before the applier changes ``listener_arn`` or one of its rules."""
        if self.delay <= 0:
            return
        current = self.visible(listener_arn, now)
        visible = current if current is not None else self._read(listener_arn)
        self._pending[listener_arn] = _Pending(now, visible)

    def visible(self, listener_arn: str, now: float) -> Snapshot | None:
        """The stale configuration readers see at ``now``; None when the live one is visible."""
        pending = self._pending.get(listener_arn)
        if pending is None:
            return None
        if now >= pending.changed_at + self.delay:
            del self._pending[listener_arn]
            return None
        return pending.visible

    def to_json(self) -> dict[str, Any]:
        return {arn: {"changedAt": p.changed_at, "visible": p.visible} for arn, p in self._pending.items()}

    def load_json(self, data: Mapping[str, Any]) -> None:
        self._pending = {
            arn: _Pending(float(entry["changedAt"]), dict(entry["visible"])) for arn, entry in data.items()
        }
