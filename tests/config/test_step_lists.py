"""Explicit step lists: what a canary, a blue-green and an A/B test accept, each refusal one line
naming the step by its index, and a list that dumps and loads back unchanged."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from rfs_deploy.config import load_stack_config, read_namespace
from rfs_deploy.config.base import AnalyzeStep, PauseStep, WeightStep
from rfs_deploy.config.model import ABTest, BlueGreen, Canary, ServiceConfig
from rfs_deploy.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
BASE = read_namespace(REPO / "stacks" / "Pulumi.production.yaml")
KEY = "rfs-deploy:services.api-service.strategy.steps"


def _load(strategy: dict[str, Any]) -> ServiceConfig:
    ns = copy.deepcopy(BASE)
    ns["services"]["api-service"]["strategy"] = strategy
    return load_stack_config(ns).services["api-service"]


def test_a_canary_list_loads_as_written() -> None:
    loaded = _load(
        {
            "type": "canary",
            "steps": [
                {"setWeight": 10},
                {"analyze": "5m"},
                {"pause": "2m"},
                {"pause": {}},
                {"pause": "until-promoted"},
                {"pause": None},
                {"setWeight": 50},
                {"analyze": {"duration": "10m", "interval": "1m"}},
                {"analyze": {}},
                {"pause": {"duration": 30}},
            ],
        }
    ).strategy
    assert isinstance(loaded, Canary)
    assert loaded.steps == [
        WeightStep(set_weight=10),
        AnalyzeStep(duration=300),
        PauseStep(duration=120),
        PauseStep(),
        PauseStep(),
        PauseStep(),
        WeightStep(set_weight=50),
        AnalyzeStep(duration=600, interval=60),
        AnalyzeStep(),
        PauseStep(duration=30),
    ]
    assert loaded.weights() == [10, 50, 100]
    assert [p.until_promoted for p in loaded.steps if isinstance(p, PauseStep)] == [
        False,
        True,
        True,
        True,
        False,
    ]


def test_weights_alone_keep_their_meaning() -> None:
    loaded = _load({"type": "canary", "steps": [5, 25, 50]}).strategy
    assert isinstance(loaded, Canary)
    assert (
        loaded.steps == [5, 25, 50]
        and loaded.explicit_steps() is None
        and loaded.weights() == [5, 25, 50, 100]
    )


@pytest.mark.parametrize(
    ("strategy", "reason"),
    [
        (
            {"type": "canary", "steps": [{"setWeight": 50}, {"setWeight": 20}]},
            "steps[1]: setWeight 20 is not above the weight before it (50)",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 50}]},
            "steps[2]: setWeight 50 is not above the weight before it (50)",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 0}]},
            "steps[0]: setWeight: Input should be greater than or equal to 1",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 101}]},
            "steps[0]: setWeight: Input should be less than or equal to 100",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": True}]},
            "steps[0]: setWeight: a boolean is not a number",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"analyze": "5x"}]},
            'steps[1]: analyze: "5x" is not a duration',
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"analyze": {"duration": "1.5m"}}]},
            'steps[1]: analyze: duration: "1.5m" is not a duration',
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"analyze": {"period": "1m"}}]},
            "steps[1]: analyze: period: Extra inputs are not permitted",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"analyze": "8d"}]},
            "steps[1]: analyze: Input should be less than or equal to 604800",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"pause": "soon"}]},
            'steps[1]: pause: "soon" is not a duration',
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, {"pause": 0}]},
            "steps[1]: pause: Input should be greater than or equal to 1",
        ),
        (
            {"type": "canary", "steps": [{"pause": {}}, {"analyze": "5m"}]},
            "steps[1]: analyze before any setWeight: the new version has no traffic to judge",
        ),
        (
            {"type": "canary", "steps": [{"setWeight": 10}, 20]},
            "steps[1]: a bare weight among step entries; write {setWeight: 20}",
        ),
        ({"type": "canary", "steps": [{"setWeight": 10, "analyze": "5m"}]}, "steps[0]: each step is one of"),
        ({"type": "canary", "steps": [{"setWeigth": 10}]}, "steps[0]: unknown step 'setWeigth'"),
        ({"type": "canary", "steps": [0, 50]}, "steps[0]: 0 is not a weight"),
        ({"type": "canary", "steps": "10,20"}, "steps must be a list"),
        ({"type": "canary", "steps": [{"pause": {}}] * 101}, "at most 100 steps, not 101"),
        (
            {"type": "blue-green", "steps": [{"setWeight": 10}]},
            "steps[0]: {setWeight: ...} is not a step of this strategy; use {pause: ...}",
        ),
        ({"type": "blue-green", "steps": [{"pause": {}}, 50]}, "steps[1]: each step is one of {pause: ...}"),
        (
            {"type": "ab-test", "steps": [{"analyze": "5m"}]},
            "steps[0]: {analyze: ...} is not a step of this strategy; use {pause: ...}",
        ),
    ],
)
def test_a_bad_step_is_one_line_naming_its_index(strategy: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(strategy)
    assert caught.value.key == KEY
    assert reason in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("settings", [BlueGreen, ABTest])
def test_blue_green_and_ab_take_pauses(settings: type[BlueGreen] | type[ABTest]) -> None:
    tag = settings.model_fields["type"].default
    loaded = _load({"type": tag, "steps": [{"pause": {}}, {"pause": "1m"}]}).strategy
    assert isinstance(loaded, settings) and loaded.steps == [PauseStep(), PauseStep(duration=60)]


@pytest.mark.parametrize(
    "strategy",
    [
        {
            "type": "canary",
            "steps": [{"setWeight": 10}, {"analyze": {"duration": "5m", "interval": "1m"}}, {"pause": {}}],
        },
        {"type": "canary", "steps": [5, 25]},
        {"type": "blue-green", "steps": [{"pause": "2m"}, {"pause": {}}]},
        {"type": "ab-test", "steps": [{"pause": {}}]},
    ],
)
def test_a_dumped_service_loads_back_unchanged(strategy: dict[str, Any]) -> None:
    """Overrides and the journal dump the service's settings and load them again."""
    service = _load(strategy)
    assert ServiceConfig.model_validate(service.model_dump(by_alias=True)) == service
    assert ServiceConfig.model_validate_json(service.model_dump_json(by_alias=True)) == service
