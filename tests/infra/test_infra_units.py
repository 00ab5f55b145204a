"""Pure parts of the program, by table: refresh mapping, A/B rules, alarm period, user data."""

from __future__ import annotations

import base64

import pytest

from rfs_deploy.config import ABTest, BlueGreen, Canary, ReleaseState, Rolling, Variants
from rfs_deploy.config.model import Analysis
from rfs_deploy.infra.alarms import alarm_period
from rfs_deploy.infra.listeners import VariantRule, variant_rules
from rfs_deploy.infra.refresh import checkpoints, refresh_preferences, rolling_settings
from rfs_deploy.infra.service import cidr_rule
from rfs_deploy.infra.slot import encode_user_data


@pytest.mark.parametrize(
    ("count", "batch", "min_healthy", "points"),
    [
        (10, 2, 80, (20, 40, 60, 80, 100)),
        (10, 3, 70, (30, 60, 90, 100)),
        (3, 1, 66, (33, 66, 100)),
        (7, 2, 71, (28, 57, 85, 100)),
        (4, 4, 0, (100,)),
        (1, 2, 0, (100,)),
        (2, 1, 50, (50, 100)),
    ],
)
def test_batches_map_to_min_healthy_and_checkpoints(
    count: int, batch: int, min_healthy: int, points: tuple[int, ...]
) -> None:
    prefs = refresh_preferences(
        Rolling(batch_size=batch, batch_interval=30), instance_count=count, grace_period=120
    )
    assert prefs.min_healthy_percentage == min_healthy
    assert prefs.checkpoint_percentages == points
    assert prefs.max_healthy_percentage == 100
    assert prefs.checkpoint_delay == 30
    assert prefs.skip_matching is True
    assert prefs.auto_rollback is True


def test_large_fleets_get_at_most_a_checkpoint_per_percent() -> None:
    points = checkpoints(1000, 1)
    assert points == tuple(range(1, 101))
    assert (
        refresh_preferences(Rolling(batch_size=1), instance_count=1000, grace_period=0).min_healthy_percentage
        == 99
    )


@pytest.mark.parametrize(
    ("warmup", "grace", "expected"),
    [(None, 120, 120), (45, 120, 45), (0, 300, 0)],
)
def test_warmup_defaults_to_the_grace_period(warmup: int | None, grace: int, expected: int) -> None:
    rolling = Rolling(instance_warmup=warmup)
    assert refresh_preferences(rolling, instance_count=4, grace_period=grace).instance_warmup == expected


def test_auto_rollback_follows_the_deploy_setting() -> None:
    prefs = refresh_preferences(Rolling(), instance_count=4, grace_period=60, auto_rollback=False)
    assert prefs.auto_rollback is False


def test_preferences_as_provider_args_use_strings_for_delay_and_warmup() -> None:
    args = refresh_preferences(Rolling(batch_interval=15), instance_count=4, grace_period=90).to_args(
        ["a", "b"]
    )
    assert (args.checkpoint_delay, args.instance_warmup) == ("15", "90")
    assert args.alarm_specification is not None and args.alarm_specification.alarms == ["a", "b"]


STEADY = ReleaseState.model_validate({"blue": {"version": "v1", "capacity": 2}})


@pytest.mark.parametrize(
    ("strategy", "release", "expected"),
    [
        (Rolling(batch_size=5), STEADY, Rolling(batch_size=5)),
        (Canary(), STEADY, Rolling()),
        (BlueGreen(), STEADY, Rolling()),
        (ABTest(), STEADY, Rolling()),
        (Rolling(batch_size=5), STEADY.evolve(rolling=Rolling(batch_size=1)), Rolling(batch_size=1)),
        (Canary(), STEADY.evolve(rolling=Rolling(batch_interval=9)), Rolling(batch_interval=9)),
    ],
    ids=["rolling service", "canary", "blue-green", "ab-test", "release overrides", "rolling on canary"],
)
def test_rolling_settings_in_force(strategy, release: ReleaseState, expected: Rolling) -> None:
    assert rolling_settings(strategy, release) == expected


@pytest.mark.parametrize(
    ("live", "idle"),
    [("blue", "green"), ("green", "blue")],
)
def test_variant_a_is_live_and_b_is_idle(live: str, idle: str) -> None:
    rules = variant_rules(Variants(header="X-V", cookie="ab", rule_priority=40), live)
    assert rules == (
        VariantRule("header-a", 40, "X-V", ("a",), live),
        VariantRule("header-b", 41, "X-V", ("b",), idle),
        VariantRule("cookie-a", 42, "Cookie", ("*ab=a", "*ab=a;*"), live),
        VariantRule("cookie-b", 43, "Cookie", ("*ab=b", "*ab=b;*"), idle),
    )


@pytest.mark.parametrize(
    ("cookie_header", "forced"),
    [
        ("variant=b", "b"),
        ("session=1; variant=b", "b"),
        ("variant=b; theme=dark", "b"),
        ("variant=a", "a"),
        ("variant=beta", None),
        ("theme=dark", None),
    ],
)
def test_cookie_patterns_match_only_exact_values(cookie_header: str, forced: str | None) -> None:
    # ALB header values are case-insensitive wildcard patterns; fnmatch models them here.
    from fnmatch import fnmatch

    rules = [r for r in variant_rules(Variants(), "blue") if r.header == "Cookie"]
    matched = [r.key[-1] for r in rules if any(fnmatch(cookie_header, v) for v in r.values)]
    assert matched == ([forced] if forced else [])


@pytest.mark.parametrize(("period", "expected"), [(10, 60), (59, 60), (60, 60), (61, 120), (300, 300)])
def test_alarm_period_is_whole_minutes(period: int, expected: int) -> None:
    assert alarm_period(Analysis(period=period)) == expected


def test_user_data_is_base64_of_the_text() -> None:
    encoded = encode_user_data("#!/bin/bash\necho héllo\n")
    assert encoded is not None and base64.b64decode(encoded).decode() == "#!/bin/bash\necho héllo\n"
    assert encode_user_data(None) is None


def test_ipv6_ingress_ranges_get_their_own_field() -> None:
    rule = cidr_rule(80, ["10.0.0.0/8", "2001:db8::/32"], "x")
    assert (rule.cidr_blocks, rule.ipv6_cidr_blocks) == (["10.0.0.0/8"], ["2001:db8::/32"])
    only_v4 = cidr_rule(80, ["0.0.0.0/0"], "x")
    assert only_v4.ipv6_cidr_blocks is None


def test_unguarded_refresh_has_no_alarms_and_no_auto_rollback() -> None:
    # Outside a rolling release (release.rolling unset) a refresh is not stopped by the slot's
    # alarms: a refresh back to a checkpoint must not be undone by alarms the bad version set off.
    prefs = refresh_preferences(Rolling(), instance_count=4, grace_period=60, guarded=False)
    args = prefs.to_args(["a", "b"])
    assert prefs.auto_rollback is False
    assert args.alarm_specification is None
