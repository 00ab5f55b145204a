"""Webhooks against a real HTTP receiver on 127.0.0.1 (docs/webhooks.md): every event of a
deployment arrives once (by id) and in order, a receiver that fails for a while still gets them
all, one that is down for good never holds a deployment or its rollback up and each lost event is
logged with its JSON (no secret in the logs), and confirm webhooks hold a step until they say 2xx
or, past their deadline, pause the deployment as a gate does. Every body the receivers get is
checked against docs/webhook-event.schema.json."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest
from drive_world import NEW, SERVICE, build_world, run
from pydantic import ValidationError
from webhook_receiver import VALIDATOR, Receiver

from rfs_deploy.config.model import ServiceConfig
from rfs_deploy.config.webhooks import Webhook
from rfs_deploy.drive import events
from rfs_deploy.drive.records import DeploymentStatus
from rfs_deploy.drive.steps import Promote, SetWeight
from rfs_deploy.drive.webhooks import confirmations, slack_text
from rfs_deploy.errors import ConfigError, StackBusy
from rfs_deploy.testing import Behaviour

TOKEN = "hook-token-0123456789"


def dead_url() -> str:
    """A 127.0.0.1 port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/{TOKEN}"


def sent(world_events: list[Any]) -> list[Any]:
    """The events a webhook gets: every one but heartbeats."""
    return [e for e in world_events if not isinstance(e, events.Heartbeat)]


def hook(url: str, **settings: Any) -> dict[str, Any]:
    return {"name": settings.pop("name", "events"), "url": url, **settings}


# --------------------------------------------------------------------------- event webhooks


def test_every_event_reaches_the_receiver_once_and_in_order(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    world = build_world(service_changes={"webhooks": [hook(receiver.url())]})
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.COMPLETED
    got = receiver.delivered()
    assert len(got) == len(receiver.requests)  # nothing was sent twice
    expected = sent(world.events)
    assert [b["seq"] for b in got] == list(range(1, len(expected) + 1))
    assert len({b["id"] for b in got}) == len(got)
    assert got[0]["type"] == "started" and got[0]["strategy"] == "canary"
    assert got[-1]["type"] == "completed" and got[-1]["status"] == "COMPLETED"
    for body, event in zip(got, expected, strict=True):
        assert (body["deployment_id"], body["service"], body["version"]) == (
            record.deployment_id,
            SERVICE,
            NEW,
        )
        if isinstance(event, events.StepStarted):
            assert (body["type"], body["index"], body["description"]) == (
                "step-started",
                event.index,
                event.description,
            )
        if isinstance(event, events.Tick):
            assert body["type"] == "verdict" and body["numbers"]["requests"] == event.numbers["requests"]
    verdicts = [b for b in got if b["type"] == "verdict"]
    assert verdicts and all(b["outcome"] == "PASS" for b in verdicts)
    assert all(h["content-type"] == "application/json" for _, h, _ in receiver.requests)


def test_a_receiver_that_fails_for_a_while_still_gets_every_event_in_order(
    receivers: Callable[..., Receiver],
) -> None:
    # 503 three times, then the connection dropped twice, then all well
    receiver = receivers(lambda n: 503 if n < 3 else 0 if n < 5 else 200)
    world = build_world(service_changes={"webhooks": [hook(receiver.url(), retries=6)]})
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.COMPLETED
    got = receiver.delivered()
    assert [b["seq"] for b in got] == list(range(1, len(sent(world.events)) + 1))
    # the first event was tried six times, each time with the same id
    first = [body for body, _, _ in receiver.requests[:6]]
    assert {b["id"] for b in first} == {got[0]["id"]}


def test_a_receiver_down_for_good_holds_nothing_up_and_every_lost_event_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = dead_url()
    settings = {"webhooks": [hook(url, retries=2, headers={"Authorization": f"Bearer {TOKEN}x"})]}
    bad = {NEW: Behaviour(error_rate=0.3)}
    quiet, watched = build_world(bad), build_world(bad, service_changes=settings)
    with caplog.at_level(logging.INFO, logger="rfs_deploy"):
        baseline, record = quiet.deploy("canary"), watched.deploy("canary")
    assert record.status is baseline.status is DeploymentStatus.ROLLED_BACK
    # the rollback took exactly as long on the driver's clock as without the webhook
    assert record.ended_at is not None and baseline.ended_at is not None
    assert record.ended_at - record.started_at == baseline.ended_at - baseline.started_at
    lost = [r for r in caplog.records if r.levelno == logging.WARNING and "not delivered" in r.getMessage()]
    expected = sent(watched.events)
    assert len(lost) == len(expected)
    for line, event in zip(lost, expected, strict=True):
        message = line.getMessage()
        assert "webhook events: event" in message and "after 3 attempts" in message
        doc = json.loads(message.split(": ", 2)[2].split(": ", 1)[1])
        assert doc["at"].endswith("Z") and doc["deployment_id"] == event.deployment_id
        VALIDATOR.validate(doc)
    assert [json.loads(r.getMessage().split("): ", 1)[1])["type"] for r in lost[-2:]] == [
        "rollback-started",
        "rolled-back",
    ]
    assert TOKEN not in caplog.text


def test_slack_format_posts_one_sentence_per_event(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    world = build_world(service_changes={"webhooks": [hook(receiver.url(), format="slack")]})
    world.deploy("canary")
    texts = [body["text"] for body in receiver.delivered()]
    assert all(list(body) == ["text"] for body, _, _ in receiver.requests)
    assert len(texts) == len(sent(world.events))
    assert all("\n" not in t and t.startswith(f"[test] {SERVICE} {NEW} (") for t in texts)
    assert "deployment started: canary" in texts[0]
    assert texts[-1].endswith("deployment COMPLETED: all steps passed")
    assert any("verdict PASS at blue 90%, green 10%" in t for t in texts)


def test_slack_text_of_a_rollback() -> None:
    head = {"stack": "prod", "service": "api", "version": "v2", "deployment_id": "abcd1234"}
    assert slack_text({**head, "type": "rollback-started", "target_version": 7, "reason": "5xx"}) == (
        "[prod] api v2 (abcd1234) ROLLING BACK to stack version 7: 5xx"
    )
    done = {**head, "type": "rolled-back", "status": "ROLLED_BACK", "reason": "rolled back: 5xx"}
    assert slack_text(done) == "[prod] api v2 (abcd1234) deployment ROLLED BACK: rolled back: 5xx"


# --------------------------------------------------------------------------- confirm webhooks


def test_confirm_traffic_increase_holds_the_step_until_it_answers_2xx(
    receivers: Callable[..., Receiver],
) -> None:
    # the question before the 20 % step is answered 403, then 200; every other one 200 at once
    answers: dict[int, int] = {}

    def answer(n: int) -> int:
        return answers.get(n, 200)

    receiver = receivers(answer)
    confirm = hook(receiver.url(), name="gate", type="confirm-traffic-increase", interval="2m")
    world = build_world(service_changes={"webhooks": [confirm]})
    answers[1] = 403  # the second question: the first is before 10 %, the second before 20 %
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.COMPLETED
    asked = [body for body, _, _ in receiver.requests]
    assert all(b["type"] == "confirm-traffic-increase" and b["webhook"] == "gate" for b in asked)
    weights = [b["weight"] for b in asked]
    assert weights[:3] == [10, 20, 20] and 100 not in weights  # 100 % is a promotion
    first, again = asked[1], asked[2]
    gap = _seconds(again["at"]) - _seconds(first["at"])
    assert gap == 120
    # the step ran after the 2xx, not before
    started = next(e for e in world.events if isinstance(e, events.StepStarted) and e.index == first["index"])
    assert started.at == _seconds(again["at"])
    notes = [e.message for e in world.events if type(e) is events.Note]
    assert any("waits for webhook gate (confirm-traffic-increase)" in n and "HTTP 403" in n for n in notes)
    assert any(n.startswith("webhook gate (confirm-traffic-increase) confirmed step") for n in notes)


def test_a_confirm_promotion_that_never_says_yes_pauses_and_promote_goes_on(
    receivers: Callable[..., Receiver],
) -> None:
    receiver = receivers(lambda n: 403, limit=50)
    events_hook = receivers()
    confirm = hook(
        receiver.url(), name="release-board", type="confirm-promotion", interval="1m", deadline="5m"
    )
    world = build_world(service_changes={"webhooks": [confirm, hook(events_hook.url())]})
    record = world.deploy("canary")
    # held, as at a gate, after the step before the 100 % step: nothing rolled back
    assert record.paused is not None and record.status is DeploymentStatus.IN_PROGRESS
    assert "webhook release-board (confirm-promotion) did not confirm step" in record.paused["reason"]
    assert not any(isinstance(e, events.RollbackStarted) for e in world.events)
    asked = [body for body, _, _ in receiver.requests]
    assert len(asked) == 6  # at 0, 1, 2, 3, 4 and 5 minutes
    assert {b["description"] for b in asked} == {"switch all traffic to the new slot"}
    found = world.latest()
    assert found.status == "paused" and found.paused_at == asked[0]["index"] - 1
    assert world.release().weights == {"blue": 10, "green": 90}
    paused = [b for b in events_hook.delivered() if b["type"] == "paused"]
    assert len(paused) == 1 and paused[0]["step"] == asked[0]["index"] - 1

    # promote is the go-ahead: the promotion runs without asking the webhook again
    promoted = run(world.driver().promote(SERVICE))
    assert promoted.status is DeploymentStatus.COMPLETED
    assert len(receiver.requests) == 6
    after = events_hook.delivered()
    kinds = [b["type"] for b in after]
    assert "promoted" in kinds and kinds[-1] == "completed"
    assert len({b["run"] for b in after}) == 2  # the deploy and the promote: two runs, ids apart
    assert len({b["id"] for b in after}) == len(after)


def test_a_promote_another_process_got_ahead_of_says_it_changed_nothing(
    receivers: Callable[..., Receiver],
) -> None:
    """Two promotes of one paused canary: this one's first update is refused by the program's
    compare-and-swap, because the other finished the deployment meanwhile. The webhook got this
    run's ``promoted``; it is told next, in a note, that this promote changed nothing."""
    receiver = receivers()
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"analyze": "1m"}, {"setWeight": 100}]
    world = build_world(
        service_changes={"strategy": {"type": "canary", "steps": steps}, "webhooks": [hook(receiver.url())]}
    )
    world.deploy("canary")
    before = world.latest()

    world.finished_meanwhile(before.last_tag, "the other promote finished the deployment")
    with pytest.raises(StackBusy, match="this promote changed nothing"):
        run(world.driver().promote(SERVICE))

    this_run = [b for b in receiver.delivered() if b["run"] != receiver.delivered()[0]["run"]]
    kinds = [b["type"] for b in this_run]
    assert kinds[0] == "promoted" and kinds[-1] == "note", kinds
    assert "this promote changed nothing" in this_run[-1]["message"]
    assert world.latest().status == "completed"


@pytest.mark.parametrize(
    ("strategy", "described"),
    [("blue-green", "switch all traffic to the new slot"), ("ab-test", "promote the new slot to live")],
)
def test_confirm_promotion_is_asked_once_before_the_switch_or_promoting_b(
    receivers: Callable[..., Receiver], strategy: str, described: str
) -> None:
    receiver = receivers()
    confirm = hook(receiver.url(), name="board", type="confirm-promotion")
    world = build_world(service_changes={"webhooks": [confirm]})
    record = world.deploy(strategy)
    assert record.status is DeploymentStatus.COMPLETED
    assert [body["description"] for body, _, _ in receiver.requests] == [described]


def test_a_confirm_webhook_is_never_asked_before_a_rollback(receivers: Callable[..., Receiver]) -> None:
    receiver = receivers()
    confirm = hook(receiver.url(), name="board", type="confirm-promotion")
    world = build_world({NEW: Behaviour(error_rate=0.3)}, service_changes={"webhooks": [confirm]})
    record = world.deploy("canary")
    assert record.status is DeploymentStatus.ROLLED_BACK
    assert receiver.requests == []


def test_which_steps_ask_which_confirm_webhooks() -> None:
    steps = (SetWeight(10), SetWeight(50), SetWeight(100), Promote())
    assert confirmations(steps) == {
        0: ("confirm-rollout", "confirm-traffic-increase"),
        1: ("confirm-traffic-increase",),
        2: ("confirm-promotion",),
    }
    # blue-green: the switch is the first move and the promotion
    assert confirmations((SetWeight(100), Promote())) == {0: ("confirm-rollout", "confirm-promotion")}


# --------------------------------------------------------------------------- configuration


def _service(**webhook: Any) -> dict[str, Any]:
    world = build_world()
    data = world.config_service().model_dump(by_alias=True)
    data["webhooks"] = [webhook]
    return data


@pytest.mark.parametrize(
    ("webhook", "problem"),
    [
        ({"name": "a", "url": "ftp://x/y"}, "not an http:// or https:// URL"),
        ({"name": "a", "url": "http://x", "interval": 30}, "interval is not a setting of an event webhook"),
        ({"name": "a", "url": "http://x", "type": "confirm-promotion", "format": "slack"}, "format is not"),
        ({"name": "a", "url": "http://x", "type": "confirm-all"}, "confirm-traffic-increase"),
        ({"name": "a", "url": "http://x", "timeout": "5h"}, "less than or equal to 300"),
        ({"name": "a b", "url": "http://x"}, "should match pattern"),
    ],
)
def test_bad_webhook_settings_are_refused(webhook: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        ServiceConfig.model_validate(_service(**webhook))


def test_a_bad_secret_url_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ValidationError) as caught:
        Webhook.model_validate({"name": "a", "url": f"not a url {TOKEN}"})
    # what the config loader prints is the message, never the value
    assert TOKEN not in caught.value.errors()[0]["msg"]


def test_two_webhooks_of_one_name_are_refused() -> None:
    data = _service(name="a", url="http://x")
    data["webhooks"] = data["webhooks"] * 2
    with pytest.raises(ValidationError, match="two webhooks are named a"):
        ServiceConfig.model_validate(data)


def test_durations_take_units_and_defaults_apply() -> None:
    confirm = Webhook.model_validate(
        {"name": "c", "url": "https://x/y", "type": "confirm-rollout", "deadline": "2h"}
    )
    assert (confirm.ask_interval, confirm.ask_deadline, confirm.timeout) == (60, 7200, 10)
    event = Webhook.model_validate({"name": "e", "url": "https://x/y"})
    assert (event.body_format, event.max_retries) == ("json", 5)
    assert TOKEN not in repr(Webhook.model_validate({"name": "e", "url": f"https://x/{TOKEN}"}))


def test_a_masked_secret_url_stops_the_deployment_naming_the_key() -> None:
    world = build_world(service_changes={"webhooks": [hook("[secret]")]})
    with pytest.raises(ConfigError, match=r"services\.api-service\.webhooks\[0\]\.url"):
        world.deploy("canary")
    assert world.tags() == []  # refused before any update


def _seconds(at: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(at.replace("Z", "+00:00")).timestamp()
