"""The config reference (docs/config.md) names every key of the config model.

The model is the single source of truth; this keeps the documentation from drifting away from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from rfs_deploy.config import model as m

REFERENCE = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text()

SECTIONS: list[tuple[type[BaseModel], str]] = [
    (m.Network, ""),
    (m.ServiceConfig, ""),
    (m.Artifact, "artifact."),
    (m.HealthCheck, "healthCheck."),
    (m.Analysis, "analysis."),
    (m.DeploySettings, "deploy."),
    (m.ValidationSettings, "validation."),
    (m.Probe, "validation.probe."),
    (m.ReleaseState, ""),
]
STRATEGIES = [m.BlueGreen, m.Canary, m.Rolling, m.ABTest]


def keys(model: type[BaseModel], prefix: str) -> list[str]:
    nested = {"artifact", "healthCheck", "analysis", "deploy", "validation"}
    return [
        prefix + (field.alias or name)
        for name, field in model.model_fields.items()
        if not (model is m.ServiceConfig and (field.alias or name) in nested)
        and not (model is m.ValidationSettings and name == "probe")
    ]


@pytest.mark.parametrize(
    "key", [k for model, prefix in SECTIONS for k in keys(model, prefix)], ids=lambda k: str(k)
)
def test_every_key_is_in_the_reference(key: str) -> None:
    assert f"`{key}`" in REFERENCE, f"docs/config.md lacks `{key}`"


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.__name__)
def test_every_strategy_key_is_in_the_reference(strategy: type[BaseModel]) -> None:
    tag = strategy.model_fields["type"].default
    row = next(line for line in REFERENCE.splitlines() if line.startswith(f"| `{tag}` |"))
    for name, field in strategy.model_fields.items():
        if name != "type":
            assert f"`{field.alias or name}`" in row, f"{tag} row lacks `{field.alias}`"


@pytest.mark.parametrize(
    ("model", "key", "shown"),
    [
        (m.Analysis, "max_error_rate", "0.05"),
        (m.Analysis, "min_requests", "100"),
        (m.DeploySettings, "deployment_timeout", "1800"),
        (m.DeploySettings, "max_deployment_time", "600"),
        (m.ServiceConfig, "instance_count", "4"),
        (m.ServiceConfig, "test_listener_port", "8443"),
    ],
)
def test_documented_defaults_match_the_model(model: type[BaseModel], key: str, shown: str) -> None:
    field = model.model_fields[key]
    assert str(field.default) in (shown, shown + ".0")
    assert re.search(rf"`(?:\w+\.)?{field.alias}` \| `{re.escape(shown)}`", REFERENCE)
