"""botocore handlers that fill moto's gaps, so the production adapters run unchanged on the sandbox.

Installed on the sandbox's boto3 session only (never on moto itself, never in production code):

* ``GetMetricData``: plain statistics go to moto's CloudWatch (dimensions put in the order the
  sandbox wrote them: moto, unlike CloudWatch, matches dimension lists by order); percentiles
  (``p99``), on which moto crashes, the range statistics ``TC(t:)`` and ``PR(:t)``, which moto
  does not know, and metric math, which moto leaves empty, are answered from the physics'
  record (the range statistics from each minute's histogram of its latency samples). The
  scenario's ``metrics.throttled`` makes a call fail with Throttling.
* ``DescribeTargetHealth``: target states from the physics (moto calls every target healthy).
* ``DescribeListeners`` / ``DescribeRules``: while a listener change propagates (the scenario's
  ``loadBalancer.propagationDelay``), the configuration from before it; otherwise moto's answer.
* ``Describe/Cancel/StartInstanceRefresh``: the sandbox's refresh engine (moto raises
  NotImplementedError). The refreshes themselves start from the stack update, as the program's
  ``instanceRefresh`` block makes the AWS provider start them.

A handler on ``before-parameter-build`` keeps the caller's parameters in the request context;
the ``before-call`` handler answers from them with a parsed response, and botocore raises the
usual ClientError for error answers, which the adapters translate like any AWS error.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from rfs_deploy.sim.alarms import evaluate_expression
from rfs_deploy.sim.record import metric_key
from rfs_deploy.sim.refresh import RefreshError

if TYPE_CHECKING:
    from rfs_deploy.sim.world import World

Answer = tuple[AWSResponse, dict[str, Any]] | None
_PARAMS = "rfs_sim_params"


def _ok(body: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    body["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": "rfs-deploy-sandbox", "RetryAttempts": 0}
    return AWSResponse("https://sandbox.invalid/", 200, {}, None), body


def _error(code: str, message: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    body = {
        "Error": {"Code": code, "Message": message, "Type": "Sender"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "rfs-deploy-sandbox", "RetryAttempts": 0},
    }
    return AWSResponse("https://sandbox.invalid/", status, {}, None), body


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp() if value.tzinfo else value.replace(tzinfo=UTC).timestamp()
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


class GapHandlers:
    """The handlers, bound to one world. :meth:`install` registers them on a SimulatedAws."""

    def __init__(self, world: World, on_change: Callable[[], None] | None = None) -> None:
        self.world = world
        #: Told when a handler changed the world (a refresh started, cancelled or rolled back).
        self.on_change = on_change or (lambda: None)
        self.operations: dict[str, Callable[[dict[str, Any]], Answer]] = {
            "cloudwatch.GetMetricData": self.get_metric_data,
            "elastic-load-balancing-v2.DescribeTargetHealth": self.describe_target_health,
            "elastic-load-balancing-v2.DescribeListeners": self.describe_listeners,
            "elastic-load-balancing-v2.DescribeRules": self.describe_rules,
            "auto-scaling.DescribeInstanceRefreshes": self.describe_instance_refreshes,
            "auto-scaling.CancelInstanceRefresh": self.cancel_instance_refresh,
            "auto-scaling.StartInstanceRefresh": self.start_instance_refresh,
        }

    def install(self, aws: Any) -> None:
        for operation, answer in self.operations.items():
            aws.add_handler(f"before-parameter-build.{operation}", _keep_params)
            aws.add_handler(f"before-call.{operation}", _answering(answer))

    # ----------------------------------------------------------------- CloudWatch

    def get_metric_data(self, params: dict[str, Any]) -> Answer:
        world = self.world
        if float(world.rng.random()) < world.scenario.metrics.throttled:
            return _error("Throttling", "Rate exceeded (sandbox flaky-metrics)")
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        now = world.clock.now()
        queries = params.get("MetricDataQueries", [])
        series: dict[str, dict[float, float]] = {}
        plain = [q for q in queries if "MetricStat" in q and not _extended(q["MetricStat"]["Stat"])]
        if plain:
            series.update(self._from_moto(plain, params))
        for query in queries:
            if "MetricStat" in query and _extended(query["MetricStat"]["Stat"]):
                stat = query["MetricStat"]
                metric = stat["Metric"]
                key = metric_key(
                    metric["Namespace"],
                    metric["MetricName"],
                    [(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])],
                )
                try:
                    stamps, values = world.record.statistic(
                        key, stat["Stat"], start, end, int(stat["Period"]), now
                    )
                except ValueError as exc:  # a statistic the sandbox does not simulate
                    return _error("InvalidParameterValue", str(exc))
                series[query["Id"]] = dict(zip(stamps, values, strict=True))
        for query in queries:
            if "Expression" in query:
                stamps = sorted({t for s in series.values() for t in s})
                computed = {
                    t: evaluate_expression(query["Expression"], {i: s.get(t) for i, s in series.items()})
                    for t in stamps
                }
                series[query["Id"]] = {t: v for t, v in computed.items() if v is not None}
        results = []
        for query in queries:
            if query.get("ReturnData", True) is False:
                continue
            ordered = sorted(series.get(query["Id"], {}).items(), reverse=True)
            results.append(
                {
                    "Id": query["Id"],
                    "Label": query.get("Label", query["Id"]),
                    "Timestamps": [datetime.fromtimestamp(t, tz=UTC) for t, _ in ordered],
                    "Values": [v for _, v in ordered],
                    "StatusCode": "Complete",
                }
            )
        return _ok({"MetricDataResults": results, "Messages": []})

    def _from_moto(
        self, queries: list[dict[str, Any]], params: dict[str, Any]
    ) -> dict[str, dict[float, float]]:
        canonical = []
        for query in queries:
            stat = query["MetricStat"]
            dims = sorted(stat["Metric"].get("Dimensions", []), key=lambda d: d["Name"])
            canonical.append(
                {
                    "Id": query["Id"],
                    "MetricStat": {**stat, "Metric": {**stat["Metric"], "Dimensions": dims}},
                    "ReturnData": True,
                }
            )
        answer = self.world.aws.raw("cloudwatch").get_metric_data(
            MetricDataQueries=canonical, StartTime=params["StartTime"], EndTime=params["EndTime"]
        )
        return {
            r["Id"]: {t.timestamp(): float(v) for t, v in zip(r["Timestamps"], r["Values"], strict=True)}
            for r in answer["MetricDataResults"]
        }

    # ----------------------------------------------------------------- ELBv2

    def describe_target_health(self, params: dict[str, Any]) -> Answer:
        arn = params["TargetGroupArn"]
        try:
            group = self.world.aws.raw("elbv2").describe_target_groups(TargetGroupArns=[arn])["TargetGroups"][
                0
            ]
        except ClientError:
            return None  # let moto answer with its own TargetGroupNotFound
        wanted = {t["Id"] for t in params.get("Targets", [])}
        descriptions = []
        for instance, conduct in self.world.targets(arn):
            if wanted and instance.instance_id not in wanted:
                continue
            health: dict[str, Any] = {"State": conduct.state}
            if conduct.state == "initial":
                health.update(
                    Reason="Elb.InitialHealthChecking", Description="Initial health checks in progress"
                )
            elif conduct.state == "unhealthy":
                health.update(Reason="Target.FailedHealthChecks", Description="Health checks failed")
            descriptions.append(
                {
                    "Target": {"Id": instance.instance_id, "Port": group.get("Port", 80)},
                    "HealthCheckPort": "traffic-port",
                    "TargetHealth": health,
                }
            )
        return _ok({"TargetHealthDescriptions": descriptions})

    def describe_listeners(self, params: dict[str, Any]) -> Answer:
        world = self.world
        arns = list(params.get("ListenerArns") or [])
        if not arns or all(world.lag.visible(a, world.clock.now()) is None for a in arns):
            return None  # nothing propagating: moto answers
        try:
            answer = world.aws.raw("elbv2").describe_listeners(ListenerArns=arns)
        except ClientError:
            return None
        listeners = [
            {**listener, "DefaultActions": world.visible_listener(listener["ListenerArn"])["DefaultActions"]}
            for listener in answer["Listeners"]
        ]
        return _ok({"Listeners": listeners})

    def describe_rules(self, params: dict[str, Any]) -> Answer:
        world = self.world
        arn = params.get("ListenerArn")
        if not arn or world.lag.visible(arn, world.clock.now()) is None:
            return None
        return _ok({"Rules": list(world.visible_listener(arn)["Rules"])})

    # ----------------------------------------------------------------- Auto Scaling

    def describe_instance_refreshes(self, params: dict[str, Any]) -> Answer:
        entries = self.world.refreshes.describe(params["AutoScalingGroupName"])
        if params.get("InstanceRefreshIds"):
            entries = [e for e in entries if e["InstanceRefreshId"] in params["InstanceRefreshIds"]]
        limit = int(params.get("MaxRecords") or 50)
        return _ok({"InstanceRefreshes": entries[:limit]})

    def cancel_instance_refresh(self, params: dict[str, Any]) -> Answer:
        world = self.world
        self.on_change()
        return _ok(
            {"InstanceRefreshId": world.refreshes.cancel(params["AutoScalingGroupName"], world.clock.now())}
        )

    def start_instance_refresh(self, params: dict[str, Any]) -> Answer:
        world = self.world
        self.on_change()
        asg = params["AutoScalingGroupName"]
        started = world.refreshes.start(asg, params.get("Preferences"), world.clock.now())
        return _ok({"InstanceRefreshId": started})


def _percentile(stat: str) -> bool:
    return stat[:1] in ("p", "P") and stat[1:].replace(".", "", 1).isdigit()


def _extended(stat: str) -> bool:
    """Whether the record answers ``stat``: a percentile, or a range statistic (``TC(...)``,
    ``PR(...)``, and the trimmed statistics' other forms, which it refuses by name)."""
    return _percentile(stat) or stat[:3].upper() in ("TC(", "PR(", "TM(", "TS(", "WM(")


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_PARAMS] = dict(params)


def _answering(answer: Callable[[dict[str, Any]], Answer]) -> Callable[..., Answer]:
    def handler(context: dict[str, Any], **_: Any) -> Answer:
        try:
            return answer(context.get(_PARAMS, {}))
        except RefreshError as exc:
            return _error(exc.code, str(exc))

    return handler
