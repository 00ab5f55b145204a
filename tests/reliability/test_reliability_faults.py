"""Fault injection in the sandbox (one row of the fault table per test): the driver ends safe.

Each row is a real deployment over the sandbox with one fault injected (see faultkit.py); the
assertions are the table's columns: exit code, end state of config and reality, what the driver did.
"""

from __future__ import annotations

import faultkit


def test_a_stack_update_failing_mid_step_is_rolled_back() -> None:
    row = faultkit.update_fails_mid_step()

    assert row.exit_code == 3
    assert "step 5 (set-weight) failed" in row.did and "provider error (injected)" in row.did
    assert row.end_state == "rolled-back"


def test_a_rollback_update_failing_once_is_retried() -> None:
    row = faultkit.rollback_fails_once()

    assert row.exit_code == 3
    assert "2 rollback attempt(s)" in row.did
    assert row.end_state == "rolled-back"


def test_a_rollback_failing_every_time_exits_4_with_the_exact_recovery_command_which_works() -> None:
    row = faultkit.rollback_fails_always()

    assert row.exit_code == 4
    assert row.details["recovery"] == "rfs-deploy rollback --stack production --service api-service --to 1"
    assert row.details["state_before_recovery"].startswith("mixed")  # why the command is needed
    assert row.details["recovery_exit"] == 0  # a requested rollback that restored its checkpoint
    assert row.end_state == "rolled-back"


def test_cloudwatch_throttling_and_missing_data_neither_pass_nor_fail_a_healthy_version() -> None:
    row = faultkit.scenario_row(
        "flaky", "flaky CloudWatch", "seed: 5\nmetrics: {missing: 0.15, delayed: 0.15, throttled: 0.1}\n"
    )

    assert row.exit_code == 0 and row.end_state == "promoted"
    assert row.details["fetch_problems"] > 0  # the faults did happen


def test_cloudwatch_down_rolls_back_instead_of_passing_blind() -> None:
    row = faultkit.cloudwatch_down()

    assert row.exit_code == 3 and row.end_state == "rolled-back"
    assert "metric fetch errors" in row.did


def test_a_slot_that_never_becomes_healthy_never_gets_traffic() -> None:
    row = faultkit.never_healthy()

    assert row.exit_code == 3 and row.end_state == "rolled-back"
    assert "step 2 (wait-healthy) failed" in row.did
    assert row.details["windows"] == 0  # no analysis ran: no production traffic reached it


def test_weights_are_verified_before_analysis_starts_when_the_listener_lags() -> None:
    row = faultkit.propagation_lag(45)

    assert row.exit_code == 0 and row.end_state == "promoted"
    # the switch and the promotion each waited for the load balancer to show them
    assert all(seconds >= 45 for seconds in row.details["change_step_seconds"])


def test_a_listener_change_that_never_shows_fails_the_step_and_rolls_back() -> None:
    row = faultkit.propagation_lag(200)

    assert row.exit_code == 3 and row.end_state == "rolled-back"
    assert "load balancer does not show the change after 120s" in row.did


def test_an_alarm_already_firing_refuses_to_start_and_changes_nothing() -> None:
    row = faultkit.alarm_already_firing()

    assert row.exit_code == 2
    assert row.did.startswith("refused (PreconditionFailed): alarm api-service-5xx-blue")
    assert "already firing" in row.did
    assert row.details["updates_run"] == 0 and row.end_state == "rolled-back"
