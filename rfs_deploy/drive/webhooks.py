"""Webhooks: deployment events sent to URLs, and URLs that confirm a step before it runs.

**Event webhooks.** Every event of a deployment (:mod:`rfs_deploy.drive.events`, heartbeats
aside) becomes one JSON document (:func:`payload`; docs/webhook-event.schema.json) with an ``id``
that stays the same on every attempt, so a receiver drops duplicates. Each webhook has one sender,
an asyncio task that posts its documents one at a time, in order, while the deployment goes on:
a deployment (and its rollback) never waits for a receiver. A failed attempt is retried with
backoff on the driver's clock (virtual in the sandbox); when the retries run out the event is
logged as a warning with its JSON (redacted), and the sender goes on with the next one. When
the driver's operation ends (completed, rolled back, paused at a gate, failed or stopped),
:func:`flush` gives the senders at most :data:`FLUSH_SECONDS` of wall-clock time, then logs every
event still undelivered the same way: none is lost without a line saying so.

**Confirm webhooks** (:func:`confirm`): before a step that moves traffic the runner asks each
confirm webhook that applies (:func:`confirmations`) and runs the step only once it answers 2xx,
asking again every ``interval`` seconds of the driver's clock up to ``deadline``.

Requests go to the network with a client of their own: the sandbox's HTTP transport on the seams
answers only for its simulated slots, and a receiver is always a real server. The URL and the
header values never appear in a log line, a record or an error: a webhook is named by its name.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import httpx

from rfs_deploy.config.secrets import redact
from rfs_deploy.config.webhooks import CONFIRM_TYPES, Webhook, WebhookType
from rfs_deploy.drive import events
from rfs_deploy.drive.records import DeploymentRecord
from rfs_deploy.drive.steps import Promote, RollRefresh, SetWeight, StartVariants, Step
from rfs_deploy.logs import get_logger

log = get_logger(__name__)

#: Wall-clock seconds the end of an operation waits for undelivered events, all webhooks together.
FLUSH_SECONDS = 30.0
#: Longest wait between two attempts of one event (seconds of the driver's clock).
MAX_BACKOFF = 60.0
#: How often a sender waiting for its next attempt looks at the driver's clock (wall seconds):
#: while an operation runs, the deployment moves that clock, not the sender.
POLL = 0.02

#: The ``type`` of each event class's documents (DeploymentFinished: by its status).
EVENT_TYPES: dict[type[events.Event], str] = {
    events.DeploymentStarted: "started",
    events.StepStarted: "step-started",
    events.StepFinished: "step-finished",
    events.Tick: "verdict",
    events.Paused: "paused",
    events.Promoted: "promoted",
    events.RollbackStarted: "rollback-started",
    events.Note: "note",
}
FINISHED_TYPES = {"COMPLETED": "completed", "ROLLED_BACK": "rolled-back", "FAILED": "failed"}


def iso(at: float) -> str:
    """``at`` (seconds since the epoch) as ISO-8601 UTC to the millisecond."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_type(event: events.Event) -> str | None:
    """The document type of ``event``; None for what is not sent (heartbeats)."""
    if isinstance(event, events.DeploymentFinished):
        return FINISHED_TYPES.get(event.status, "finished")
    for kind in type(event).__mro__:
        found = EVENT_TYPES.get(kind)
        if found is not None:
            return found
    return None


def _finite(value: Any) -> Any:
    """``value`` as JSON can hold it: NaN and infinity (a verdict without data) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True)
class Context:
    """What every document of one deployment says about where it comes from."""

    stack: str
    service: str
    deployment_id: str
    version: str
    #: Names this run of the driver (one deploy, one promote): ``seq`` counts from 1 in each.
    run: str

    @classmethod
    def of(cls, record: DeploymentRecord) -> Context:
        return cls(record.stack, record.service, record.deployment_id, record.version, secrets.token_hex(4))

    def head(self, kind: str, at: float, number: str) -> dict[str, Any]:
        return {
            "id": f"{self.deployment_id}-{self.run}-{number}",
            "type": kind,
            "at": iso(at),
            "stack": self.stack,
            "service": self.service,
            "deployment_id": self.deployment_id,
            "version": self.version,
            "run": self.run,
        }


def payload(event: events.Event, context: Context, seq: int) -> dict[str, Any] | None:
    """The JSON document of ``event``, the ``seq``-th of this run; None when it is not sent."""
    kind = event_type(event)
    if kind is None:
        return None
    doc = context.head(kind, event.at, str(seq))
    doc["seq"] = seq
    for item in dataclasses.fields(event):
        if item.name not in ("at", "deployment_id"):
            doc[item.name] = _finite(getattr(event, item.name))
    return doc


def slack_text(doc: dict[str, Any]) -> str:
    """One sentence for a person, for ``format: slack``."""
    who = f"[{doc['stack']}] {doc['service']} {doc['version']} ({doc['deployment_id']})"
    kind = doc["type"]
    if kind == "started":
        what = f"deployment started: {doc['strategy']}, {doc['total']} steps"
    elif kind == "step-started":
        what = f"step {doc['index'] + 1}/{doc['total']} started: {doc['description']}"
    elif kind == "step-finished":
        what = f"step {doc['index'] + 1} ({doc['kind']}) {doc['outcome']}: {doc['reason']}"
    elif kind == "verdict":
        weights = ", ".join(f"{slot} {w}%" for slot, w in sorted(doc["weights"].items()))
        what = f"verdict {doc['outcome']} at {weights}: {doc['reason']}"
    elif kind == "promoted":
        how = " --full" if doc.get("full") else ""
        what = f"promoted{how} past step {doc['step'] + 1} by {doc['by']}"
    elif kind == "rollback-started":
        what = f"ROLLING BACK to stack version {doc['target_version']}: {doc['reason']}"
    elif kind in ("completed", "rolled-back", "failed", "finished"):
        status = str(doc.get("status") or kind).upper().replace("_", " ").replace("-", " ")
        what = f"deployment {status}: {doc['reason']}"
    else:
        what = str(doc.get("message", kind))
    return f"{who} {what}"


def _error(exc: BaseException, hook: Webhook) -> str:
    """An attempt's failure in one line, without the URL or a header value."""
    if isinstance(exc, httpx.TimeoutException):
        text = f"no answer within {hook.timeout}s"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text, hook.secrets())


async def post(client: httpx.AsyncClient, hook: Webhook, body: dict[str, Any]) -> tuple[bool, str]:
    """One request of ``body`` to ``hook``: (answered 2xx, what happened in a few words)."""
    headers = {"content-type": "application/json", "user-agent": "rfs-deploy"}
    headers.update({k: v.get_secret_value() for k, v in hook.headers.items()})
    try:
        answer = await client.post(
            hook.url.get_secret_value(), content=json.dumps(body), headers=headers, timeout=hook.timeout
        )
    except (httpx.HTTPError, OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return False, _error(exc, hook)
    if 200 <= answer.status_code < 300:
        return True, f"HTTP {answer.status_code}"
    return False, f"HTTP {answer.status_code}"


def _client() -> httpx.AsyncClient:
    # the network, never the sandbox's transport (see the module docstring); no redirects: a
    # receiver that moved says so with its error, and a token is not sent on to another host
    return httpx.AsyncClient(follow_redirects=False)


# --------------------------------------------------------------------------- event delivery


@dataclass
class Sender:
    """Posts one event webhook's documents, one at a time and in order."""

    hook: Webhook
    clock: Callable[[], Any]
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    wake: asyncio.Event | None = None
    #: Set by :func:`flush`: no deployment moves the clock any more, waits move it themselves.
    flushing: bool = False
    #: The document being sent and its attempts so far.
    current: dict[str, Any] | None = None
    delivered: int = 0

    def put(self, doc: dict[str, Any]) -> None:
        self.queue.append(doc)
        self._start()
        if self.wake is not None:
            self.wake.set()

    def _start(self) -> None:
        if self.task is not None and not self.task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous caller): the flush starts it
        self.wake = asyncio.Event()
        self.task = loop.create_task(self._run(), name=f"webhook {self.hook.name}")

    def body(self, doc: dict[str, Any]) -> dict[str, Any]:
        return {"text": slack_text(doc)} if self.hook.body_format == "slack" else doc

    async def _run(self) -> None:
        async with _client() as client:
            while True:
                if not self.queue:
                    if self.flushing:
                        return
                    assert self.wake is not None
                    self.wake.clear()
                    await self.wake.wait()
                    continue
                self.current = self.queue.popleft()
                try:
                    await self._deliver(client, self.current)
                except Exception as exc:  # a bug here must not silence the events after it
                    lost(self.hook, self.current, f"({type(exc).__name__}: {exc})")
                self.current = None

    async def _deliver(self, client: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        attempts = self.hook.max_retries + 1
        why = ""
        for attempt in range(1, attempts + 1):
            ok, why = await post(client, self.hook, self.body(doc))
            if ok:
                self.delivered += 1
                return
            log.info(
                "webhook %s: event %s attempt %d/%d failed: %s",
                self.hook.name,
                doc["id"],
                attempt,
                attempts,
                why,
            )
            if attempt < attempts:
                await self._wait(min(MAX_BACKOFF, 2.0 ** (attempt - 1)))
        lost(self.hook, doc, f"after {attempts} attempts ({why})")

    async def _wait(self, seconds: float) -> None:
        """``seconds`` of the driver's clock. While the operation runs the deployment moves a
        virtual clock, and this only watches it; during the flush this wait moves it."""
        clock = self.clock()
        due = clock.now() + seconds
        while clock.now() < due:
            if self.flushing:
                await clock.sleep(due - clock.now())
                return
            await asyncio.sleep(POLL)
            clock = self.clock()


def lost(hook: Webhook, doc: dict[str, Any], why: str) -> None:
    """The warning that stands for an event a webhook did not get: with the event itself."""
    text = redact(json.dumps(doc, sort_keys=True), hook.secrets())
    log.warning("webhook %s: event %s not delivered %s: %s", hook.name, doc["id"], why, text)


class Delivery:
    """The event webhooks of one deployment during one driver operation: a listener of the
    seams' events, and the senders it feeds."""

    def __init__(self, seams: Any, hooks: Sequence[Webhook], record: DeploymentRecord) -> None:
        self.seams = seams
        self.context = Context.of(record)
        self.senders = [Sender(h, lambda: seams.clock) for h in hooks if not h.confirm]
        self.seq = 0
        self.confirm_seq = 0

    def __call__(self, event: Any) -> None:
        if not isinstance(event, events.Event) or event.deployment_id != self.context.deployment_id:
            return
        if not self.senders:
            return
        doc = payload(event, self.context, self.seq + 1)
        if doc is None:
            return
        self.seq += 1
        for sender in self.senders:
            sender.put(doc)

    async def flush(self, deadline: float) -> None:
        """Let the senders finish until ``deadline`` (``time.monotonic()``); then log what is left."""
        for sender in self.senders:
            sender.flushing = True
            sender._start()
            if sender.wake is not None:
                sender.wake.set()
        tasks = [s.task for s in self.senders if s.task is not None and not s.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for sender in self.senders:
            if sender.task is not None and not sender.task.done():
                sender.task.cancel()
                await asyncio.gather(sender.task, return_exceptions=True)
            left = ([sender.current] if sender.current is not None else []) + list(sender.queue)
            sender.queue.clear()
            sender.current = None
            for doc in left:
                lost(sender.hook, doc, f"when the operation ended ({FLUSH_SECONDS:.0f}s to deliver ran out)")


def open_delivery(seams: Any, hooks: Sequence[Webhook], record: DeploymentRecord) -> Delivery | None:
    """Send ``record``'s events to the event webhooks among ``hooks`` until the operation ends
    (:func:`delivering` flushes it); None when there are none. Also what :func:`confirm` names
    its requests by."""
    if not hooks:
        return None
    delivery = Delivery(seams, hooks, record)
    seams.listeners.append(delivery)
    seams.outbox.append(delivery)
    return delivery


async def flush(seams: Any) -> None:
    """The end of an operation: every delivery it opened gets the rest of :data:`FLUSH_SECONDS`."""
    opened, seams.outbox[:] = list(seams.outbox), []
    deadline = time.monotonic() + FLUSH_SECONDS
    for delivery in opened:
        if delivery in seams.listeners:
            seams.listeners.remove(delivery)
        await delivery.flush(deadline)


P = ParamSpec("P")
R = TypeVar("R")


def delivering(
    method: Callable[Concatenate[Any, P], Awaitable[R]],
) -> Callable[Concatenate[Any, P], Awaitable[R]]:
    """For the driver's entry points: when the operation ends, however it ends, :func:`flush`."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(self, *args, **kwargs)
        finally:
            await flush(self.seams)

    return wrapper


# --------------------------------------------------------------------------- confirm webhooks


def confirmations(steps: Sequence[Step]) -> dict[int, tuple[WebhookType, ...]]:
    """The confirm webhook types each plan index asks before it runs: ``confirm-rollout`` before
    the first step that moves traffic to the new version, ``confirm-traffic-increase`` before
    every other weight increase short of all traffic, ``confirm-promotion`` before the first
    step that gives it all traffic (100 %, the blue-green switch, promoting B; a rolling
    release's refresh is both its first move and its promotion)."""
    asked: dict[int, list[WebhookType]] = {}
    weight = 0
    moved = promoted = False
    for index, step in enumerate(steps):
        increase = full = False
        if isinstance(step, SetWeight):
            increase, full, weight = step.weight > weight, step.weight >= 100, max(weight, step.weight)
        elif isinstance(step, StartVariants):
            increase, weight = step.split > weight, max(weight, step.split)
        elif isinstance(step, Promote):
            increase, full, weight = weight < 100, True, 100
        elif isinstance(step, RollRefresh):
            increase = full = True
        kinds: list[WebhookType] = []
        if increase and not moved:
            kinds.append("confirm-rollout")
            moved = True
        if full and not promoted:
            kinds.append("confirm-promotion")
            promoted = True
        elif increase:
            kinds.append("confirm-traffic-increase")
        if kinds:
            asked[index] = sorted(kinds, key=CONFIRM_TYPES.index)
    return {index: tuple(kinds) for index, kinds in asked.items()}


@dataclass(frozen=True)
class Answer:
    """What the confirm webhooks of one step came to."""

    confirmed: bool
    #: Why not (the webhook, the last answer, how long it was asked), for the pause record.
    reason: str = ""


Notify = Callable[[str], None]
Wait = Callable[[float, str], Awaitable[None]]


async def confirm(
    seams: Any,
    hooks: Sequence[Webhook],
    record: DeploymentRecord,
    index: int,
    total: int,
    step: Step,
    kinds: Sequence[WebhookType],
    until: float,
    wait: Wait,
    note: Notify,
) -> Answer:
    """Ask every confirm webhook of ``kinds`` (in that order) before plan step ``index``; each in
    turn until it answers 2xx, every ``interval`` seconds (``wait``: the driver's clock, with
    heartbeats), for at most its ``deadline`` and never past ``until`` (the deployment's time
    budget). ``note`` reports a step that waits, once per webhook."""
    context = Context.of(record)
    asked = 0
    async with _client() as client:
        for kind in kinds:
            for hook in (h for h in hooks if h.type == kind):
                started = seams.clock.now()
                stop = min(started + hook.ask_deadline, until)
                waiting = False
                while True:
                    asked += 1
                    now = seams.clock.now()
                    body = context.head(kind, now, f"c{asked}")
                    body.update(
                        webhook=hook.name,
                        index=index,
                        total=total,
                        kind=step.kind,
                        description=step.describe(),
                    )
                    if isinstance(step, SetWeight):
                        body["weight"] = step.weight
                    ok, why = await post(client, hook, body)
                    if ok:
                        if waiting:
                            note(f"webhook {hook.name} ({kind}) confirmed step {index + 1}/{total}: {why}")
                        break
                    left = stop - seams.clock.now()
                    if left <= 0:
                        waited = seams.clock.now() - started
                        budget = (
                            " (the deployment's time budget)" if until < started + hook.ask_deadline else ""
                        )
                        return Answer(
                            False,
                            f"webhook {hook.name} ({kind}) did not confirm step {index + 1} in "
                            f"{waited:.0f}s{budget}; last answer: {why}",
                        )
                    if not waiting:
                        waiting = True
                        note(
                            f"step {index + 1}/{total} waits for webhook {hook.name} ({kind}) to answer "
                            f"2xx (got {why}); asking every {hook.ask_interval}s for at most "
                            f"{hook.ask_deadline}s"
                        )
                    await wait(min(hook.ask_interval, left), f"waiting for webhook {hook.name} ({kind})")
    return Answer(True)
