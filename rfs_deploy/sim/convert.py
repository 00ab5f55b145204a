"""Pulumi-AWS inputs (camelCase, numbers as floats) to the AWS API shapes moto accepts.

Pure functions, one per structure the program uses; the applier calls them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def whole(value: Any) -> Any:
    """Integral floats to ints (the engine sends every number as a float)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def tag_list(tags: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"Key": str(k), "Value": str(v)} for k, v in sorted((tags or {}).items())]


def permissions(rules: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Security group ingress/egress rules as IpPermissions."""
    result = []
    for rule in rules or []:
        perm: dict[str, Any] = {"IpProtocol": str(rule.get("protocol", "-1"))}
        if perm["IpProtocol"] != "-1":
            perm["FromPort"] = int(rule.get("fromPort", 0))
            perm["ToPort"] = int(rule.get("toPort", 0))
        description = rule.get("description")
        cidrs = rule.get("cidrBlocks") or []
        perm["IpRanges"] = [
            {"CidrIp": c, **({"Description": description} if description else {})} for c in cidrs
        ]
        perm["Ipv6Ranges"] = [{"CidrIpv6": c} for c in rule.get("ipv6CidrBlocks") or []]
        perm["UserIdGroupPairs"] = [{"GroupId": g} for g in rule.get("securityGroups") or []]
        result.append(perm)
    return result


def health_check(check: Mapping[str, Any] | None) -> dict[str, Any]:
    """A target group's health check as CreateTargetGroup / ModifyTargetGroup parameters."""
    check = check or {}
    params: dict[str, Any] = {}
    pairs = {
        "protocol": "HealthCheckProtocol",
        "port": "HealthCheckPort",
        "path": "HealthCheckPath",
        "interval": "HealthCheckIntervalSeconds",
        "timeout": "HealthCheckTimeoutSeconds",
        "healthyThreshold": "HealthyThresholdCount",
        "unhealthyThreshold": "UnhealthyThresholdCount",
    }
    for key, name in pairs.items():
        if check.get(key) is not None:
            params[name] = whole(check[key])
    if "enabled" in check:
        params["HealthCheckEnabled"] = bool(check["enabled"])
    if check.get("matcher"):
        params["Matcher"] = {"HttpCode": str(check["matcher"])}
    return params


def action(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One listener or rule action (forward to one group, weighted forward with stickiness, a
    redirect or a fixed response)."""
    kind = str(spec.get("type", "forward"))
    result: dict[str, Any] = {"Type": kind}
    if spec.get("order") is not None:
        result["Order"] = int(spec["order"])
    if spec.get("targetGroupArn"):
        result["TargetGroupArn"] = spec["targetGroupArn"]
    forward = spec.get("forward")
    if forward:
        config: dict[str, Any] = {
            "TargetGroups": [
                {"TargetGroupArn": g["arn"], "Weight": int(g.get("weight", 1))}
                for g in forward.get("targetGroups", [])
            ]
        }
        sticky = forward.get("stickiness")
        if sticky:
            config["TargetGroupStickinessConfig"] = {
                "Enabled": bool(sticky.get("enabled", False)),
                "DurationSeconds": int(sticky.get("duration", 3600)),
            }
        result["ForwardConfig"] = config
    if kind == "redirect" and spec.get("redirect"):
        redirect = spec["redirect"]
        names = {"protocol": "Protocol", "port": "Port", "host": "Host", "path": "Path", "query": "Query"}
        result["RedirectConfig"] = {
            "StatusCode": str(redirect.get("statusCode", "HTTP_301")),
            **{key: str(redirect[name]) for name, key in names.items() if redirect.get(name) is not None},
        }
    if kind == "fixed-response" and spec.get("fixedResponse"):
        fixed = spec["fixedResponse"]
        result["FixedResponseConfig"] = {
            "StatusCode": str(fixed.get("statusCode", "503")),
            "ContentType": fixed.get("contentType", "text/plain"),
            **({"MessageBody": fixed["messageBody"]} if fixed.get("messageBody") else {}),
        }
    return result


def conditions(specs: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Listener rule conditions: http-header, path-pattern and host-header."""
    result = []
    for spec in specs or []:
        if spec.get("httpHeader"):
            header = spec["httpHeader"]
            result.append(
                {
                    "Field": "http-header",
                    "HttpHeaderConfig": {
                        "HttpHeaderName": header["httpHeaderName"],
                        "Values": list(header["values"]),
                    },
                }
            )
        elif spec.get("pathPattern"):
            result.append(
                {
                    "Field": "path-pattern",
                    "PathPatternConfig": {"Values": list(spec["pathPattern"]["values"])},
                }
            )
        elif spec.get("hostHeader"):
            result.append(
                {"Field": "host-header", "HostHeaderConfig": {"Values": list(spec["hostHeader"]["values"])}}
            )
    return result


def launch_template_data(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """LaunchTemplateData for moto. UserData is left out on purpose: moto 5.2.5 fails every later
    launch of a group whose template version carries its own UserData (the sandbox keeps the
    user data in its own record instead)."""
    data: dict[str, Any] = {}
    if inputs.get("imageId"):
        data["ImageId"] = inputs["imageId"]
    if inputs.get("instanceType"):
        data["InstanceType"] = inputs["instanceType"]
    if inputs.get("vpcSecurityGroupIds"):
        data["SecurityGroupIds"] = list(inputs["vpcSecurityGroupIds"])
    if inputs.get("monitoring"):
        data["Monitoring"] = {"Enabled": bool(inputs["monitoring"].get("enabled", False))}
    if inputs.get("metadataOptions"):
        meta = inputs["metadataOptions"]
        data["MetadataOptions"] = {
            k: v
            for k, v in {
                "HttpEndpoint": meta.get("httpEndpoint"),
                "HttpTokens": meta.get("httpTokens"),
            }.items()
            if v
        }
    specs = []
    for spec in inputs.get("tagSpecifications") or []:
        specs.append({"ResourceType": spec["resourceType"], "Tags": tag_list(spec.get("tags"))})
    if specs:
        data["TagSpecifications"] = specs
    return data


def template_spec(launch_template: Mapping[str, Any] | None) -> dict[str, str] | None:
    """An Auto Scaling group's LaunchTemplate parameter from its ``launchTemplate`` input."""
    if not launch_template:
        return None
    spec: dict[str, str] = {"Version": str(launch_template.get("version") or "$Default")}
    if launch_template.get("id"):
        spec["LaunchTemplateId"] = str(launch_template["id"])
    elif launch_template.get("name"):
        spec["LaunchTemplateName"] = str(launch_template["name"])
    return spec


def group_tags(name: str, tags: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {
            "ResourceId": name,
            "ResourceType": "auto-scaling-group",
            "Key": str(t["key"]),
            "Value": str(t["value"]),
            "PropagateAtLaunch": bool(t.get("propagateAtLaunch", False)),
        }
        for t in tags or []
    ]


def alarm(name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """PutMetricAlarm parameters from a MetricAlarm's inputs (plain, extended or metric math)."""
    params: dict[str, Any] = {
        "AlarmName": name,
        "ComparisonOperator": inputs["comparisonOperator"],
        "EvaluationPeriods": int(inputs["evaluationPeriods"]),
        "Threshold": float(inputs.get("threshold", 0.0)),
        "TreatMissingData": inputs.get("treatMissingData", "missing"),
        "ActionsEnabled": bool(inputs.get("actionsEnabled", True)),
        "Tags": tag_list(inputs.get("tags")),
    }
    optional = {
        "alarmDescription": "AlarmDescription",
        "namespace": "Namespace",
        "metricName": "MetricName",
        "statistic": "Statistic",
        "extendedStatistic": "ExtendedStatistic",
        "unit": "Unit",
    }
    params.update({api: inputs[key] for key, api in optional.items() if inputs.get(key)})
    if inputs.get("period"):
        params["Period"] = int(inputs["period"])
    if inputs.get("datapointsToAlarm"):
        params["DatapointsToAlarm"] = int(inputs["datapointsToAlarm"])
    if inputs.get("dimensions"):
        params["Dimensions"] = [{"Name": k, "Value": str(v)} for k, v in inputs["dimensions"].items()]
    if inputs.get("metricQueries"):
        params["Metrics"] = [_metric_query(q) for q in inputs["metricQueries"]]
    return params


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"Id": query["id"], "ReturnData": bool(query.get("returnData", False))}
    if query.get("expression"):
        result["Expression"] = query["expression"]
    if query.get("label"):
        result["Label"] = query["label"]
    metric = query.get("metric")
    if metric:
        result["MetricStat"] = {
            "Metric": {
                "Namespace": metric["namespace"],
                "MetricName": metric["metricName"],
                "Dimensions": [
                    {"Name": k, "Value": str(v)} for k, v in (metric.get("dimensions") or {}).items()
                ],
            },
            "Period": int(metric["period"]),
            "Stat": metric["stat"],
        }
    return result


def scaling_policy(name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """``put_scaling_policy`` parameters of an ``aws.autoscaling.Policy`` (target tracking on a
    predefined metric, as the program makes them)."""
    params: dict[str, Any] = {
        "AutoScalingGroupName": inputs.get("autoscalingGroupName"),
        "PolicyName": name,
        "PolicyType": inputs.get("policyType") or "SimpleScaling",
    }
    if inputs.get("estimatedInstanceWarmup") is not None:
        params["EstimatedInstanceWarmup"] = int(inputs["estimatedInstanceWarmup"])
    tracking = inputs.get("targetTrackingConfiguration")
    if tracking:
        config: dict[str, Any] = {"TargetValue": float(tracking.get("targetValue", 0))}
        metric = tracking.get("predefinedMetricSpecification")
        if metric:
            config["PredefinedMetricSpecification"] = {
                "PredefinedMetricType": metric.get("predefinedMetricType")
            }
        if tracking.get("disableScaleIn") is not None:
            config["DisableScaleIn"] = bool(tracking["disableScaleIn"])
        params["TargetTrackingConfiguration"] = config
    return params
