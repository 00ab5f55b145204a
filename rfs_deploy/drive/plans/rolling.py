"""Rolling: the live slot's launch template moves to the new version; instance refresh does the rest."""

from __future__ import annotations

from rfs_deploy.config.model import ReleaseState, ServiceConfig
from rfs_deploy.config.strategies.rolling import Rolling
from rfs_deploy.drive.plans.common import analysis_interval, check_start, pinned_live, refresh_duration
from rfs_deploy.drive.steps import Analyze, FinishRefresh, RollRefresh, Step, WatchRefresh


def plan(service: ServiceConfig, strategy: Rolling, release: ReleaseState, version: str) -> tuple[Step, ...]:
    """Refresh → watch the refresh → one more analysis window on the fully refreshed slot → end.

    Batch size, interval and warm-up are instance refresh preferences the program derives from
    ``strategy``; the plan changes the version and records ``strategy`` in the release state, so
    a rolling release chosen per deployment refreshes with its own settings.

    The refresh mixes old and new instances behind one target group, so there is no separate
    slot to compare with: the watch judges the slot against its own minutes before the refresh,
    and holds the refresh at its checkpoint (cancelled, then started again) while no window has
    passed since the last batch came in (see :meth:`rfs_deploy.drive.analysis.Analyst.watch_refresh`).
    A watch its traffic leaves undecided holds the deployment *before* it, so ``promote`` runs it
    again, which starts the refresh first. The final window gives the last batch a full period
    of traffic before the release counts as done.

    ``RollRefresh`` records the rolling settings in the release state, which also makes the
    program guard the refresh with the slot's alarms; ``FinishRefresh`` removes them again, so a
    later refresh back to this state is not stopped by alarms (see rfs_deploy.infra.refresh).

    The watch allows the refresh its expected duration (:func:`refresh_duration`) plus
    ``deploy.maxDeploymentTime``, the overrun every deployment is allowed.
    """
    check_start(service, release, version)
    interval = analysis_interval(service, service.analysis.period)
    expected = refresh_duration(service, strategy)
    return (
        RollRefresh(version=version, rolling=strategy, live_capacity=pinned_live(service, release)),
        WatchRefresh(
            timeout=expected + service.deploy.max_deployment_time,
            interval=interval,
            expected=expected,
        ),
        Analyze(duration=interval, interval=interval, baseline=False),
        FinishRefresh(),
    )
