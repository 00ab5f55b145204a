"""Input validation of the stack config: versions, names, bounded numbers, bounded YAML.

Each case is one thing an attacker or an unlucky operator could write, and the one-line
ConfigError (or refusal) it must get: a version that would run code in the root boot script, a
name that passes a ``$``-anchored check with a trailing newline, a duration that never ends, a
boolean taken for a number, an alias bomb, a value JSON cannot carry.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from rfs_deploy.config import Artifact, SlotState, load_stack_config, load_stack_file, read_namespace
from rfs_deploy.config.bounded_yaml import MAX_BYTES, MAX_DEPTH
from rfs_deploy.config.loading import parse_release, read_other_config
from rfs_deploy.config.model import MAX_DURATION, check_version
from rfs_deploy.drive.driver import resolve
from rfs_deploy.errors import ConfigError
from rfs_deploy.sim.mockrun import run_stack_file

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "stacks" / "Pulumi.production.yaml"
ROLLING = REPO / "stacks" / "Pulumi.rolling.yaml"
BASE = read_namespace(PRODUCTION)

#: Versions that must never reach a shell script, a tag or an AMI lookup.
BAD_VERSIONS = [
    "v13$(touch /tmp/pwned)",
    "v13`id`",
    'v13"; rm -rf / #',
    "v13'",
    "v13\n",
    "v13\nreboot",
    "v1 3",
    "v13;id",
    "v13|id",
    "v13&",
    "v13>x",
    "${version}",
    "-rf",
    ".hidden",
    "",
    "v" * 129,
    "v1.0.0\x00",
    "v1\u00e9",
]
GOOD_VERSIONS = ["v2.0.0", "2026.12.01-rc1", "1.4.0+build.7", "release_42", "V" + "1" * 127]


def namespace() -> dict[str, Any]:
    return copy.deepcopy(BASE)


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize("version", BAD_VERSIONS, ids=repr)
def test_a_version_outside_the_pattern_is_refused_everywhere_it_enters(version: str) -> None:
    with pytest.raises(ValueError, match="is not a version"):
        check_version(version)
    with pytest.raises(ValueError, match="is not a version"):
        SlotState(version=version, capacity=1)
    with pytest.raises(ConfigError, match="is not a version") as caught:
        parse_release("api-service", {"live": "blue", "blue": {"version": version, "capacity": 2}})
    assert "\n" not in str(caught.value)
    ns = namespace()
    ns["services"]["api-service"]["artifact"]["amis"][version] = "ami-0123456789abcdef0"
    with pytest.raises(ConfigError, match="is not a version") as caught:
        load_stack_config(ns)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


@pytest.mark.parametrize("version", GOOD_VERSIONS)
def test_ordinary_versions_pass(version: str) -> None:
    assert check_version(version) == version
    assert SlotState(version=version, capacity=1).version == version


@pytest.mark.parametrize("version", BAD_VERSIONS[:6], ids=repr)
def test_user_data_substitution_checks_the_version_itself(version: str) -> None:
    artifact = Artifact(
        default_ami="ami-0123456789abcdef0", user_data='aws s3 cp "s3://b/app-${version}.tgz" .'
    )
    with pytest.raises(ValueError, match="is not a version"):
        artifact.user_data_for(version)
    assert artifact.user_data_for("v2.0.0") == 'aws s3 cp "s3://b/app-v2.0.0.tgz" .'


def _user_data(run: Any) -> list[str]:
    templates = run.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates
    return [base64.b64decode(t.inputs["userData"]).decode() for t in templates]


def test_the_rolling_stack_boot_script_carries_only_a_validated_version() -> None:
    """The shipped ``rolling`` stack puts ``${version}`` into a root shell script: a release
    state naming a version with shell syntax stops the program before any resource."""
    release = read_namespace(ROLLING)["release"]
    good = copy.deepcopy(release)
    good["billing"]["green"] = {"version": "v13.0.0", "capacity": 2}
    scripts = _user_data(run_stack_file(ROLLING, overrides={"release": good}))
    assert any('billing-v13.0.0.tar.gz"' in s for s in scripts)

    bad = copy.deepcopy(release)
    bad["billing"]["green"] = {"version": "v13$(touch /tmp/pwned)", "capacity": 2}
    with pytest.raises(pulumi.RunError, match="is not a version") as caught:
        run_stack_file(ROLLING, overrides={"release": bad})
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- names and patterns


def _rename(ns: dict[str, Any], new: str) -> None:
    ns["services"][new] = ns["services"].pop("api-service")
    ns["release"][new] = ns["release"].pop("api-service")


@pytest.mark.parametrize("name", ["api\n", "api-service\n", "\napi", "api\r", "api service"], ids=repr)
def test_a_service_name_with_a_newline_or_space_is_refused(name: str) -> None:
    ns = namespace()
    _rename(ns, name)
    with pytest.raises(ConfigError, match="must be 1-15 characters") as caught:
        load_stack_config(ns)
    assert "\n" not in str(caught.value)


def _svc(ns: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = ns["services"]["api-service"]
    return result


#: Every pattern-checked string with a trailing newline (the ``$``-before-``\n`` trap).
TRAILING_NEWLINE = {
    "vpcId": lambda ns: ns["network"].update(vpcId=ns["network"]["vpcId"] + "\n"),
    "subnetIds": lambda ns: ns["network"]["subnetIds"].__setitem__(0, ns["network"]["subnetIds"][0] + "\n"),
    "defaultAmi": lambda ns: _svc(ns)["artifact"].update(defaultAmi="ami-0123456789abcdef0\n"),
    "amis value": lambda ns: _svc(ns)["artifact"]["amis"].update({"v3.0.0": "ami-0123456789abcdef0\n"}),
    "instanceType": lambda ns: _svc(ns).update(instanceType="t3.micro\n"),
    "healthCheck.path": lambda ns: _svc(ns).update(healthCheck={"path": "/health\n"}),
    "healthCheck.matcher": lambda ns: _svc(ns).update(healthCheck={"matcher": "200\n"}),
    "validation.healthPath": lambda ns: _svc(ns).update(validation={"healthPath": "/health\r\nX: y"}),
    "ab-test header": lambda ns: _svc(ns).update(strategy={"type": "ab-test", "header": "X-Variant\n"}),
    "ab-test cookie": lambda ns: _svc(ns).update(strategy={"type": "ab-test", "cookie": "variant\n"}),
    "release image": lambda ns: ns["release"]["api-service"]["blue"].update(image="ami-0123456789abcdef0\n"),
}


@pytest.mark.parametrize("mutate", TRAILING_NEWLINE.values(), ids=TRAILING_NEWLINE.keys())
def test_no_pattern_accepts_a_trailing_newline(mutate: Any) -> None:
    ns = namespace()
    mutate(ns)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(ns)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- bounded numbers

DURATIONS = {
    "canaryInterval": lambda ns, v: _svc(ns)["strategy"].update(canaryInterval=v),
    "scaleDownDelay": lambda ns, v: _svc(ns)["strategy"].update(scaleDownDelay=v),
    "deploymentTimeout": lambda ns, v: _svc(ns).update(deploy={"deploymentTimeout": v}),
    "maxDeploymentTime": lambda ns, v: _svc(ns).update(deploy={"maxDeploymentTime": v}),
    "healthCheckInterval": lambda ns, v: _svc(ns).update(deploy={"healthCheckInterval": v}),
    "healthCheckGracePeriod": lambda ns, v: _svc(ns).update(healthCheckGracePeriod=v),
    "blue-green switchDelay": lambda ns, v: _svc(ns).update(
        strategy={"type": "blue-green", "switchDelay": v}
    ),
    "blue-green validationDuration": lambda ns, v: _svc(ns).update(
        strategy={"type": "blue-green", "validationDuration": v}
    ),
    "rolling batchInterval": lambda ns, v: _svc(ns).update(strategy={"type": "rolling", "batchInterval": v}),
    "rolling instanceWarmup": lambda ns, v: _svc(ns).update(
        strategy={"type": "rolling", "instanceWarmup": v}
    ),
    "ab-test duration": lambda ns, v: _svc(ns).update(strategy={"type": "ab-test", "duration": v}),
    "analysis.period": lambda ns, v: _svc(ns).update(analysis={"period": v}),
}


@pytest.mark.parametrize("mutate", DURATIONS.values(), ids=DURATIONS.keys())
@pytest.mark.parametrize("value", [10**9, MAX_DURATION + 1, True, float("nan"), float("inf")], ids=repr)
def test_durations_are_bounded_and_never_booleans(mutate: Any, value: Any) -> None:
    ns = namespace()
    mutate(ns, value)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(ns)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda ns: _svc(ns).update(instanceCount=True), "instanceCount"),
        (lambda ns: _svc(ns).update(instanceCount=10**6), "instanceCount"),
        (lambda ns: _svc(ns)["strategy"].update(canaryPercentage=False), "canaryPercentage"),
        (lambda ns: _svc(ns)["strategy"].update(steps=[True, 50]), "steps"),
        (lambda ns: _svc(ns).update(strategy={"type": "rolling", "batchSize": 10**9}), "batchSize"),
        (lambda ns: _svc(ns).update(analysis={"maxP99Latency": float("inf")}), "maxP99Latency"),
        (lambda ns: _svc(ns).update(analysis={"maxErrorRate": float("nan")}), "maxErrorRate"),
        (lambda ns: _svc(ns).update(analysis={"minRequests": 10**20}), "minRequests"),
        (lambda ns: _svc(ns).update(analysis={"latencyTolerance": 1e300}), "latencyTolerance"),
        (lambda ns: _svc(ns).update(validation={"timeout": True}), "timeout"),
        (lambda ns: ns["release"]["api-service"].update(weights={"blue": True, "green": 99}), "weights"),
        (lambda ns: ns["release"]["api-service"]["blue"].update(capacity=True), "capacity"),
    ],
)
def test_counts_rates_and_percentages_are_bounded_numbers(mutate: Any, key: str) -> None:
    ns = namespace()
    mutate(ns)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(ns)
    assert key in caught.value.key and "\n" not in str(caught.value)


def test_the_largest_durations_still_load() -> None:
    ns = namespace()
    _svc(ns)["strategy"].update(canaryInterval=MAX_DURATION)
    _svc(ns).update(deploy={"deploymentTimeout": MAX_DURATION})
    assert load_stack_config(ns).services["api-service"].strategy.canary_interval == MAX_DURATION  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "overrides",
    [
        {"strategy": {"canaryInterval": 10**9}},
        {"strategy": {"canaryInterval": True}},
        {"strategy": {"steps": [5, 10**9]}},
        {"analysis": {"maxP99Latency": float("inf")}},
        {"deploy": {"deploymentTimeout": 10**9}},
    ],
    ids=repr,
)
def test_per_deployment_overrides_get_the_same_bounds(overrides: dict[str, Any]) -> None:
    service = load_stack_config(namespace()).services["api-service"]
    with pytest.raises(ConfigError) as caught:
        resolve(service, None, overrides)
    assert str(caught.value).startswith("config deployment settings.")


# --------------------------------------------------------------------------- the stack file itself


def stack_file(tmp_path: Path, text: str | bytes, name: str = "x") -> Path:
    path = tmp_path / f"Pulumi.{name}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def production_text(**extra: Any) -> str:
    doc = yaml.safe_load(PRODUCTION.read_text())
    doc["config"].update(extra)
    return yaml.safe_dump(doc)


def alias_bomb(levels: int = 9) -> str:
    lines = ['  a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines)


def test_an_alias_bomb_under_a_pass_through_key_is_refused(tmp_path: Path) -> None:
    """~1.5 KB that stands for 9**9 strings: refused while reading, never expanded."""
    text = (
        production_text()
        + "  myapp:blob:\n"
        + alias_bomb().replace("\n  ", "\n    ").replace("  a0", "    a0", 1)
    )
    assert len(text.encode()) < 8 * 1024
    path = stack_file(tmp_path, text)
    for read in (read_namespace, read_other_config, load_stack_file):
        with pytest.raises(ConfigError, match=r"YAML aliases \(\*a0\) are not accepted") as caught:
            read(path)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b"\xff\xfe\x00config: {}\n", "not UTF-8"),
        ("config: [unclosed\n", "is not valid YAML"),
        ("- a\n- list\n", "must be a mapping"),
        ("just text\n", "must be a mapping"),
        ("config: 7\n", "'config' must be a mapping"),
        ("config:\n  a: " + "[" * (MAX_DEPTH + 10) + "]" * (MAX_DEPTH + 10) + "\n", "nested deeper than"),
        ("config:\n  a: " + "[" * 100_000 + "\n", "nested deeper than"),
        ("config:\n  a: 1\n  a: 2\n", "duplicate key"),
        ("config: {}\n---\nconfig: {}\n", "single document"),
        ("config:\n  a: !!python/object/apply:os.system [id]\n", "could not determine a constructor"),
        ("config:\n  a: " + "9" * 5000 + "\n", "is not valid YAML"),
        ("config:\n  a: b\n" + "#" * MAX_BYTES + "\n", "larger than 1 MiB"),
    ],
    ids=["not utf-8", "not yaml", "a list", "a scalar", "config scalar", "deep", "very deep", "duplicate",
         "two documents", "python tag", "huge integer", "too large"],
)  # fmt: skip
def test_a_stack_file_that_is_not_a_bounded_yaml_mapping_is_one_line(
    tmp_path: Path, text: str | bytes, says: str
) -> None:
    path = stack_file(tmp_path, text)
    with pytest.raises(ConfigError, match=says) as caught:
        read_namespace(path)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("value", "key", "says"),
    [
        ("!!binary aGVsbG8=", "myapp:blob", "!!binary"),
        ("!!set {a, b}", "myapp:blob", "!!set"),
        ("2024-01-01", "myapp:blob", "date or timestamp"),
        ("{when: 2024-01-01T10:00:00Z}", "myapp:blob.when", "date or timestamp"),
        ("[1, .nan]", "myapp:blob[1]", "NaN and infinity"),
        ("-.inf", "myapp:blob", "NaN and infinity"),
        ("{1: one}", "myapp:blob", "the key 1 is not text"),
        ("{null: x}", "myapp:blob", "the key None is not text"),
        ("!!omap [a: 1]", "myapp:blob[0]", "ordered mapping"),
    ],
)
def test_a_value_json_cannot_carry_is_refused_at_load_naming_its_key(
    tmp_path: Path, value: str, key: str, says: str
) -> None:
    path = stack_file(tmp_path, PRODUCTION.read_text() + f"  myapp:blob: {value}\n")
    with pytest.raises(ConfigError, match=says) as caught:
        read_namespace(path)
    assert caught.value.key == key


@pytest.mark.parametrize("region", ["moon-1", "us-east-1\n", "US-EAST-1", "us-east-1; id", "", "7", "[]"])
def test_a_bad_aws_region_is_refused_at_load(tmp_path: Path, region: str) -> None:
    doc = yaml.safe_load(PRODUCTION.read_text())
    doc["config"]["aws:region"] = yaml.safe_load(region) if region in ("7", "[]") else region
    path = stack_file(tmp_path, yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="is not an AWS region") as caught:
        read_namespace(path)
    assert caught.value.key == "aws:region" and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "region", ["us-east-1", "eu-central-2", "ap-southeast-7", "us-gov-west-1", "us-isob-east-1"]
)
def test_real_regions_load(tmp_path: Path, region: str) -> None:
    path = stack_file(tmp_path, production_text(**{"aws:region": region}))
    assert read_other_config(path)["aws:region"] == region


def test_anchors_without_aliases_and_a_byte_order_mark_are_fine(tmp_path: Path) -> None:
    text = "\ufeff" + PRODUCTION.read_text() + "  myapp:note: &n plain\n"
    assert read_other_config(stack_file(tmp_path, text.encode()))["myapp:note"] == "plain"


def test_a_fifo_in_place_of_a_scenario_or_stack_file_is_refused_without_hanging(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; the reader opens non-blocking
    and refuses anything that is not a regular file."""
    import os

    from rfs_deploy.config.bounded_yaml import YamlRefused, read
    from rfs_deploy.errors import ScenarioError
    from rfs_deploy.sim import load_scenario

    fifo = tmp_path / "scenario.yaml"
    os.mkfifo(fifo)
    with pytest.raises(YamlRefused, match="not a regular file"):
        read(fifo)
    with pytest.raises(ScenarioError):
        load_scenario(fifo)
