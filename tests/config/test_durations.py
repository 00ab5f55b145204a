"""Durations: every seconds-valued setting takes ``90``, ``"90"``, ``"90s"``, ``"5m"``, ``"1h"``,
``"1h30m"`` or ``"1d"`` and holds whole seconds (an ``int``) once loaded; anything else is one
line naming the key, and the field's own bounds still apply to the seconds."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rfs_deploy.config import ServiceConfig, load_stack_config, read_namespace
from rfs_deploy.config.base import MAX_DURATION, parse_duration
from rfs_deploy.errors import ConfigError, InvalidInput
from rfs_deploy.sim.scenario import parse_scenario

REPO = Path(__file__).resolve().parents[2]
BASE = read_namespace(REPO / "stacks" / "Pulumi.production.yaml")

ACCEPTED: list[tuple[Any, int]] = [
    (90, 90),
    ("90", 90),
    ("90s", 90),
    ("5m", 300),
    ("1h", 3600),
    ("1h30m", 5400),
    ("2m30s", 150),
    ("1d", 86_400),
    ("1d2h3m4s", 93_784),
    ("0", 0),
    ("0s", 0),
    (120.0, 120),
]

#: Values that are not a duration at all (the bounds are checked separately).
REFUSED: list[Any] = [
    "5x",
    "1.5m",
    "1,5m",
    "-5",
    "-5m",
    "+5",
    "",
    "s",
    "5 m",
    " 5m",
    "5m ",
    "5M",
    "1m1h",
    "5m5m",
    "1w",
    "PT5M",
    "1" * 100,
    "\u0665",  # Arabic-Indic digits: str.isdigit and a plain \\d say yes
    "\u0665m",
    True,
    False,
    1.5,
    float("nan"),
    float("inf"),
]


@pytest.mark.parametrize(("value", "seconds"), ACCEPTED, ids=repr)
def test_accepted_forms_are_whole_seconds(value: Any, seconds: int) -> None:
    parsed = parse_duration(value)
    assert parsed == seconds and type(parsed) is int


@pytest.mark.parametrize("value", REFUSED, ids=repr)
def test_refused_forms_say_what_a_duration_is(value: Any) -> None:
    with pytest.raises(ValueError, match="not a duration") as caught:
        parse_duration(value)
    message = str(caught.value)
    assert '"90s", "5m", "1h"' in message and "\n" not in message and len(message) < 160


def test_a_refused_string_is_quoted_in_the_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration("5x")
    assert str(caught.value) == '"5x" is not a duration (use 90, "90s", "5m", "1h" or "1h30m")'


def _svc(ns: dict[str, Any]) -> dict[str, Any]:
    return ns["services"]["api-service"]


Setter = Callable[[dict[str, Any], Any], Any]
Getter = Callable[[ServiceConfig], Any]

#: key named in errors -> (how to set it, how to read it back). Every seconds-valued setting.
FIELDS: dict[str, tuple[Setter, Getter]] = {
    "strategy.canaryInterval": (
        lambda ns, v: _svc(ns)["strategy"].update(canaryInterval=v),
        lambda s: s.strategy.canary_interval,  # type: ignore[union-attr]
    ),
    "strategy.stickinessDuration": (
        lambda ns, v: _svc(ns)["strategy"].update(stickinessDuration=v),
        lambda s: s.strategy.stickiness_duration,  # type: ignore[union-attr]
    ),
    "strategy.scaleDownDelay": (
        lambda ns, v: _svc(ns)["strategy"].update(scaleDownDelay=v),
        lambda s: s.strategy.scale_down_delay,  # type: ignore[union-attr]
    ),
    "strategy.switchDelay": (
        lambda ns, v: _svc(ns).update(strategy={"type": "blue-green", "switchDelay": v}),
        lambda s: s.strategy.switch_delay,  # type: ignore[union-attr]
    ),
    "strategy.validationDuration": (
        lambda ns, v: _svc(ns).update(strategy={"type": "blue-green", "validationDuration": v}),
        lambda s: s.strategy.validation_duration,  # type: ignore[union-attr]
    ),
    "strategy.batchInterval": (
        lambda ns, v: _svc(ns).update(strategy={"type": "rolling", "batchInterval": v}),
        lambda s: s.strategy.batch_interval,  # type: ignore[union-attr]
    ),
    "strategy.instanceWarmup": (
        lambda ns, v: _svc(ns).update(strategy={"type": "rolling", "instanceWarmup": v}),
        lambda s: s.strategy.instance_warmup,  # type: ignore[union-attr]
    ),
    "strategy.duration": (
        lambda ns, v: _svc(ns).update(strategy={"type": "ab-test", "duration": v}),
        lambda s: s.strategy.duration,  # type: ignore[union-attr]
    ),
    "deploy.healthCheckInterval": (
        lambda ns, v: _svc(ns).update(deploy={"healthCheckInterval": v}),
        lambda s: s.deploy.health_check_interval,
    ),
    "deploy.healthCheckTimeout": (
        lambda ns, v: _svc(ns).update(deploy={"healthCheckTimeout": v}),
        lambda s: s.deploy.health_check_timeout,
    ),
    "deploy.maxDeploymentTime": (
        lambda ns, v: _svc(ns).update(deploy={"maxDeploymentTime": v}),
        lambda s: s.deploy.max_deployment_time,
    ),
    "deploy.deploymentTimeout": (
        lambda ns, v: _svc(ns).update(deploy={"deploymentTimeout": v}),
        lambda s: s.deploy.deployment_timeout,
    ),
    "healthCheckGracePeriod": (
        lambda ns, v: _svc(ns).update(healthCheckGracePeriod=v),
        lambda s: s.health_check_grace_period,
    ),
    "warmup": (lambda ns, v: _svc(ns).update(warmup=v), lambda s: s.warmup),
    "analysis.period": (lambda ns, v: _svc(ns).update(analysis={"period": v}), lambda s: s.analysis.period),
    "healthCheck.interval": (
        lambda ns, v: _svc(ns).update(healthCheck={"interval": v}),
        lambda s: s.health_check.interval,
    ),
    "healthCheck.timeout": (
        lambda ns, v: _svc(ns).update(healthCheck={"interval": 300, "timeout": v}),
        lambda s: s.health_check.timeout,
    ),
}


def _load(key: str, value: Any) -> ServiceConfig:
    ns = copy.deepcopy(BASE)
    FIELDS[key][0](ns, value)
    return load_stack_config(ns).services["api-service"]


@pytest.mark.parametrize("key", FIELDS)
def test_every_seconds_setting_takes_units(key: str) -> None:
    # One minute fits every field's bounds (the health check timeout's 2..120 included).
    loaded = FIELDS[key][1](_load(key, "1m"))
    assert loaded == 60 and type(loaded) is int
    assert FIELDS[key][1](_load(key, "60")) == 60


@pytest.mark.parametrize("key", FIELDS)
def test_every_seconds_setting_refuses_a_non_duration_in_one_line(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(key, "5x")
    assert caught.value.key == f"rfs-deploy:services.api-service.{key}"
    assert '"5x" is not a duration' in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("strategy.canaryInterval", "8d", f"less than or equal to {MAX_DURATION}"),
        ("strategy.canaryInterval", "0s", "greater than or equal to 1"),
        ("strategy.canaryInterval", -60, "greater than or equal to 1"),
        ("healthCheck.timeout", "3m", "less than or equal to 120"),
        ("healthCheck.interval", "4s", "greater than or equal to 5"),
        ("warmup", "1h1s", "less than or equal to 3600"),
        ("analysis.period", "2d", "less than or equal to 86400"),
        ("strategy.duration", "59s", "greater than or equal to 60"),
        ("strategy.batchInterval", "3d", "less than or equal to 172800"),
        ("deploy.deploymentTimeout", True, "a boolean is not a duration"),
    ],
)
def test_units_are_bounded_by_the_fields_own_bounds(key: str, value: Any, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(key, value)
    assert caught.value.key == f"rfs-deploy:services.api-service.{key}"
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_the_largest_durations_load_with_units() -> None:
    assert _load("strategy.canaryInterval", "7d").strategy.canary_interval == MAX_DURATION  # type: ignore[union-attr]
    assert _load("deploy.deploymentTimeout", "168h").deploy.deployment_timeout == MAX_DURATION


def test_scenario_durations_take_units() -> None:
    scenario = parse_scenario(
        {
            "new": {"bootTime": "2m", "slowStart": {"unhealthyFor": "30s", "degradedFor": "1m30s"}},
            "metrics": {"delay": "3m"},
            "loadBalancer": {"propagationDelay": "5s"},
        }
    )
    assert scenario.new.boot_time == 120
    assert (scenario.new.slow_start.unhealthy_for, scenario.new.slow_start.degraded_for) == (30, 90)
    assert (scenario.metrics.delay, scenario.load_balancer.propagation_delay) == (180, 5)
    with pytest.raises(InvalidInput, match="not a duration") as caught:
        parse_scenario({"new": {"bootTime": "2 minutes"}})
    assert "bootTime" in str(caught.value) and "\n" not in str(caught.value)
