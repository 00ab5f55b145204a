"""The strategy registry: every place that names strategies takes the names from it.

The config union and its error message, ``STRATEGY_NAMES``, the probe's strategies, the CLI's
``--strategy`` choices, the plan dispatch, the seed API's enums and settings, and the table in
docs/strategies.md. The last test proves the docs' worked example: its two files, dropped into a
copy of the package, make a fifth strategy that the config, the CLI and the plans know.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import get_args

import pytest
from pydantic import ValidationError

from rfs_deploy import deployment
from rfs_deploy import strategies as seed
from rfs_deploy.cli import build_parser
from rfs_deploy.config import model
from rfs_deploy.config.strategies import PROBED_NAMES, REGISTRY, STRATEGIES, STRATEGY_NAMES, StrategyInfo
from rfs_deploy.drive.plans import PLANS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "strategies.md"
AMI = "ami-0aa1100000000a100"


def test_the_four_strategies_in_their_order() -> None:
    # the order is the union's: the unknown-type message and the CLI's choices list them so
    assert STRATEGY_NAMES == ("blue-green", "canary", "rolling", "ab-test")
    assert model.STRATEGY_NAMES == STRATEGY_NAMES
    assert tuple(REGISTRY) == STRATEGY_NAMES
    assert [info.order for info in STRATEGIES] == sorted(info.order for info in STRATEGIES)


def test_the_config_union_is_the_registrys_models() -> None:
    union, discriminator = get_args(model.Strategy)
    assert get_args(union) == tuple(info.settings for info in STRATEGIES)
    assert discriminator.discriminator == "type"
    for info in STRATEGIES:
        assert info.settings.model_fields["type"].default == info.name
        parsed = model.ServiceConfig.model_validate(
            {"artifact": {"defaultAmi": AMI}, "strategy": {"type": info.name}}
        )
        assert type(parsed.strategy) is info.settings
    # the public names stay where they were
    assert (model.BlueGreen, model.Canary, model.Rolling, model.ABTest) == tuple(
        i.settings for i in STRATEGIES
    )


def test_an_unknown_strategy_is_refused_naming_every_registered_one() -> None:
    with pytest.raises(ValidationError) as caught:
        model.ServiceConfig.model_validate({"artifact": {"defaultAmi": AMI}, "strategy": {"type": "linar"}})
    expected = ", ".join(repr(name) for name in STRATEGY_NAMES)
    assert f"does not match any of the expected tags: {expected}" in str(caught.value)


def test_the_probe_accepts_exactly_the_strategies_registered_with_an_idle_slot() -> None:
    assert get_args(model.ProbedStrategy) == PROBED_NAMES == ("blue-green", "canary", "ab-test")
    assert model.Probe(strategies=list(PROBED_NAMES)).strategies == list(PROBED_NAMES)
    for info in STRATEGIES:
        if not info.probe:
            with pytest.raises(ValidationError):
                model.Probe(strategies=[info.name])


def _strategy_choices() -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for option in sub._actions:
                    if "--strategy" in option.option_strings:
                        found[name] = tuple(option.choices or ())
    return found


def test_the_cli_offers_every_registered_strategy() -> None:
    assert _strategy_choices() == {
        "deploy": STRATEGY_NAMES,
        "plan": STRATEGY_NAMES,
        "simulate": STRATEGY_NAMES,
    }


def test_every_strategy_has_a_plan_and_every_plan_module_a_strategy() -> None:
    assert tuple(PLANS) == STRATEGY_NAMES
    plan_modules = {p.stem for p in (ROOT / "rfs_deploy/drive/plans").glob("*.py")} - {"__init__", "common"}
    settings_modules = {p.stem for p in (ROOT / "rfs_deploy/config/strategies").glob("*.py")} - {"__init__"}
    assert plan_modules == settings_modules == {info.module for info in STRATEGIES}
    for info in STRATEGIES:
        assert PLANS[info.name].__module__ == f"rfs_deploy.drive.plans.{info.module}"
        assert info.settings.__module__ == f"rfs_deploy.config.strategies.{info.module}"


@pytest.mark.parametrize(
    "enum", [seed.DeploymentType, deployment.DeploymentStrategy], ids=lambda e: e.__qualname__
)
def test_the_seed_enums_are_pinned_to_the_registry(enum: type[Enum]) -> None:
    members = {member.name: member.value for member in enum}
    assert members == {info.seed_name: info.name for info in STRATEGIES if info.seed_name is not None}


def test_every_seed_strategy_has_a_factory_entry_of_its_type() -> None:
    for member in seed.DeploymentType:
        created = seed.DeploymentStrategyFactory.create(member)
        assert created.config.deployment_type is member
        assert created.config.strategy_settings()["type"] == member.value


def test_a_seed_config_sets_exactly_its_strategys_registered_fields() -> None:
    attributes = {f.name for f in fields(seed.DeploymentConfig)}
    for member in seed.DeploymentType:
        info = REGISTRY[member.value]
        assert set(info.seed_fields) <= attributes
        assert set(info.seed_fields.values()) <= set(info.settings.model_fields)
        config = seed.DeploymentConfig(deployment_type=member)
        # every seed attribute set one past its default, so a wrong mapping shows
        for attr in info.seed_fields:
            setattr(config, attr, getattr(config, attr) + 1)
        settings = info.settings.model_validate(config.strategy_settings())
        for attr, name in info.seed_fields.items():
            assert getattr(settings, name) == getattr(config, attr)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _row(info: StrategyInfo) -> str:
    seed_name = f"`{info.seed_name}`" if info.seed_name else "-"
    return (
        f"| `{info.name}` | {info.description} | {_yes(info.probe)} | {_yes(info.baseline)} | {seed_name} |"
    )


def test_the_docs_table_is_the_registry() -> None:
    text = DOCS.read_text()
    table = text.split("\n## ", 1)[0]  # the table above the first section
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert rows == [_row(info) for info in STRATEGIES], "docs/strategies.md's table must list the registry"


def _example(path: str) -> str:
    """The code block that follows the docs' mention of ``path``."""
    text = DOCS.read_text()
    found = re.search(rf"`{re.escape(path)}`(?:(?!```).)*?```python\n(.*?)```", text, re.S)
    assert found, f"docs/strategies.md shows no code block for {path}"
    return found.group(1)


_PROBE_THE_COPY = """
import json
import argparse
import rfs_deploy
from pydantic import ValidationError
from rfs_deploy.cli import build_parser
from rfs_deploy.config.model import STRATEGY_NAMES, Probe, ReleaseState, ServiceConfig
from rfs_deploy.drive.plans import describe, plan, replay

service = ServiceConfig.model_validate(
    {"artifact": {"defaultAmi": "AMI"}, "instanceCount": 4,
     "strategy": {"type": "linear", "percentage": 30, "interval": 120}}
)
start = ReleaseState.model_validate({"live": "blue", "blue": {"version": "v1", "capacity": 4}})
steps = plan(service, service.strategy, start, "v2")
try:
    ServiceConfig.model_validate({"artifact": {"defaultAmi": "AMI"}, "strategy": {"type": "linar"}})
    refused = ""
except ValidationError as exc:
    refused = str(exc)
choices = {}
for action in build_parser()._actions:
    if isinstance(action, argparse._SubParsersAction):
        for name, sub in action.choices.items():
            for option in sub._actions:
                if "--strategy" in option.option_strings:
                    choices[name] = list(option.choices)
print(json.dumps({
    "package": rfs_deploy.__file__,
    "names": list(STRATEGY_NAMES),
    "refused": refused,
    "choices": choices,
    "probe": Probe(strategies=["linear"]).strategies,
    "steps": describe(steps),
    "final": replay(start, steps).model_dump(mode="json", exclude_none=True),
}))
"""


def test_the_docs_example_adds_a_fifth_strategy_with_two_files(tmp_path: Path) -> None:
    copy = tmp_path / "rfs_deploy"
    shutil.copytree(ROOT / "rfs_deploy", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in ("rfs_deploy/config/strategies/linear.py", "rfs_deploy/drive/plans/linear.py"):
        assert not (ROOT / path).exists()
        (tmp_path / path).write_text(_example(path))
    done = subprocess.run(
        [sys.executable, "-c", _PROBE_THE_COPY.replace("AMI", AMI)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout)
    assert seen["package"] == str(copy / "__init__.py")
    assert seen["names"] == [*STRATEGY_NAMES, "linear"]
    assert "'ab-test', 'linear'" in seen["refused"]
    assert seen["choices"] == {name: seen["names"] for name in ("deploy", "plan", "simulate")}
    assert seen["probe"] == ["linear"]
    assert [line.split(". ", 1)[1] for line in seen["steps"]] == [
        "deploy v2 to the idle slot (4 instances)",
        "wait until the new slot is healthy (at most 600s)",
        "validate v2 through the test listener",
        "set weight 30%",
        "analyze for 120s against the live slot",
        "set weight 60%",
        "analyze for 120s against the live slot",
        "set weight 90%",
        "analyze for 120s against the live slot",
        "switch all traffic to the new slot",
        "analyze for 120s",
        "promote the new slot to live",
        "scale the old slot to zero",
    ]
    assert seen["final"] == {
        "live": "green",
        "blue": {"version": "v1", "capacity": 0},
        "green": {"version": "v2", "capacity": 4},
        "weights": {"blue": 0, "green": 100},
    }
