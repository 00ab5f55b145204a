"""The real program against every stack file in stacks/: the resolved resource graph per service.

Each stack is evaluated once under the mock runtime; every (stack, service) pair is then checked
against its own config: the graph must follow the release state and the service settings.
A service behind a shared load balancer (``routing``) has no load balancer or listeners of its
own: the checks of those run on the other services (OWN_ALB_CASES), and test_infra_shared_alb.py
checks the shared one and its rules.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from infra_helpers import (
    STACK_FILES,
    T_ALARM,
    T_ASG,
    T_LT,
    T_TG,
    ServiceView,
    as_plain,
    user_data_text,
)

from rfs_deploy.config import SLOTS, StackConfig, load_stack_file
from rfs_deploy.infra.alarms import alarm_period, error_rate_expression
from rfs_deploy.infra.refresh import refresh_preferences, rolling_settings
from rfs_deploy.infra.routing import LOAD_BALANCER_TAG
from rfs_deploy.outputs import parse_outputs
from rfs_deploy.sim.mockrun import AwsMocks, ProgramRun, run_stack_file


@functools.cache
def evaluated(path: Path) -> tuple[StackConfig, ProgramRun]:
    return load_stack_file(path), run_stack_file(path)


CASES = [
    pytest.param(path, name, id=f"{path.name.removeprefix('Pulumi.').removesuffix('.yaml')}:{name}")
    for path in STACK_FILES
    for name in load_stack_file(path).services
]
#: The services with a load balancer and listeners of their own.
OWN_ALB_CASES = [
    case for case in CASES if load_stack_file(case.values[0]).services[str(case.values[1])].routing is None
]


def view(path: Path, name: str) -> tuple[StackConfig, ServiceView]:
    config, run = evaluated(path)
    return config, ServiceView(run, name)


def test_there_is_a_stack_per_strategy_and_one_with_several_services() -> None:
    defaults = {s.strategy.type for path in STACK_FILES for s in load_stack_file(path).services.values()}
    assert defaults == {"blue-green", "canary", "rolling", "ab-test"}
    assert any(len(load_stack_file(path).services) > 1 for path in STACK_FILES)


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_one_service_component_and_one_load_balancer_per_service(path: Path) -> None:
    config, run = evaluated(path)
    services = run.of_type("rfs-deploy:aws:Service")
    assert sorted(r.name for r in services) == sorted(config.services)
    own = [name for name, service in config.services.items() if service.routing is None]
    assert len(run.of_type("aws:lb/loadBalancer:LoadBalancer")) == len(own) + len(config.load_balancers)
    assert set(run.outputs["services"]) == set(config.services)


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_components_and_children(path: Path, name: str) -> None:
    _, svc = view(path, name)
    run = svc.run
    children = {(r.type, r.name) for r in run.children(svc.component)}
    assert children == {
        ("aws:ec2/securityGroup:SecurityGroup", f"{name}-alb-sg"),
        ("aws:ec2/securityGroup:SecurityGroup", f"{name}-instance-sg"),
        ("aws:lb/loadBalancer:LoadBalancer", f"{name}-alb"),
        ("rfs-deploy:aws:Slot", f"{name}-blue"),
        ("rfs-deploy:aws:Slot", f"{name}-green"),
        ("rfs-deploy:aws:Listeners", f"{name}-listeners"),
    }
    for slot in SLOTS:
        slot_component = run.named(f"{name}-{slot}", "rfs-deploy:aws:Slot")
        assert {(r.type, r.name) for r in run.children(slot_component)} == {
            (T_TG, f"{name}-tg-{slot}"),
            (T_LT, f"{name}-lt-{slot}"),
            (T_ASG, f"{name}-asg-{slot}"),
            (T_ALARM, f"{name}-5xx-{slot}"),
            (T_ALARM, f"{name}-p99-{slot}"),
            (T_ALARM, f"{name}-cpu-{slot}"),
        }


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_security_groups(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg, network = config.services[name], config.network
    alb_rules = svc.alb_sg.inputs["ingress"]
    assert sorted(int(r["fromPort"]) for r in alb_rules) == sorted(
        [cfg.listener_port, cfg.test_listener_port]
    )
    # the test listener serves an unreleased version: the VPC's CIDR unless the stack says whom
    test_cidrs = network.test_ingress_cidrs if network.test_ingress_cidrs is not None else [AwsMocks.vpc_cidr]
    for rule in alb_rules:
        assert rule["fromPort"] == rule["toPort"] and rule["protocol"] == "tcp"
        cidrs = rule.get("cidrBlocks", []) + rule.get("ipv6CidrBlocks", [])
        wanted = test_cidrs if int(rule["fromPort"]) == cfg.test_listener_port else network.ingress_cidrs
        assert sorted(cidrs) == sorted(wanted)
        assert "securityGroups" not in rule
    (app_rule,) = svc.instance_sg.inputs["ingress"]
    assert as_plain(app_rule) | {"description": ""} == {
        "protocol": "tcp",
        "fromPort": cfg.app_port,
        "toPort": cfg.app_port,
        "securityGroups": [svc.alb_sg.id],
        "description": "",
    }
    for sg in (svc.alb_sg, svc.instance_sg):
        assert sg.inputs["vpcId"] == network.vpc_id


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_load_balancer(path: Path, name: str) -> None:
    config, svc = view(path, name)
    lb = svc.load_balancer.inputs
    assert lb["loadBalancerType"] == "application"
    assert lb["subnets"] == config.network.subnet_ids
    assert lb["securityGroups"] == [svc.alb_sg.id]
    assert lb.get("internal", False) is config.network.internal


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_listeners_follow_release_state(path: Path, name: str) -> None:
    config, svc = view(path, name)
    release, cfg = config.release[name], config.services[name]
    expected = {svc.tg(slot).id: release.weights[slot] for slot in SLOTS}
    assert svc.forward_weights() == expected
    assert svc.listener.inputs["port"] == cfg.listener_port
    (test_action,) = svc.test_listener.inputs["defaultActions"]
    assert test_action == {"type": "forward", "targetGroupArn": svc.tg(release.idle).id}
    assert svc.test_listener.inputs["port"] == cfg.test_listener_port
    (action,) = svc.listener.inputs["defaultActions"]
    assert ("stickiness" in action["forward"]) is (release.stickiness is not None)
    assert bool(svc.rules()) is (release.variants is not None)


@pytest.mark.parametrize(("path", "name"), CASES)
def test_target_groups_check_health_as_configured(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg = config.services[name]
    hc = cfg.health_check
    for slot in SLOTS:
        tg = svc.tg(slot).inputs
        assert as_plain(tg["healthCheck"]) == {
            "enabled": True,
            "protocol": "HTTP",
            "port": "traffic-port",
            "path": hc.path,
            "interval": hc.interval,
            "timeout": hc.timeout,
            "healthyThreshold": hc.healthy_threshold,
            "unhealthyThreshold": hc.unhealthy_threshold,
            "matcher": hc.matcher,
        }
        assert (tg["port"], tg["protocol"], tg["targetType"]) == (cfg.app_port, "HTTP", "instance")
        assert tg["vpcId"] == config.network.vpc_id


@pytest.mark.parametrize(("path", "name"), CASES)
def test_launch_templates_boot_the_slot_version(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg, release = config.services[name], config.release[name]
    for slot in SLOTS:
        version = release.slot(slot).version or release.slot(release.live).version
        assert version is not None
        lt = svc.lt(slot).inputs
        assert lt["imageId"] == cfg.artifact.image_for(version)
        assert lt["instanceType"] == cfg.instance_type
        assert lt["vpcSecurityGroupIds"] == [svc.instance_sg.id]
        assert user_data_text(svc.lt(slot)) == cfg.artifact.user_data_for(version)
        assert lt["tags"]["rfs-deploy:version"] == version
        assert lt["updateDefaultVersion"] is True


@pytest.mark.parametrize(("path", "name"), CASES)
def test_auto_scaling_groups(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg, release, network = config.services[name], config.release[name], config.network
    for slot in SLOTS:
        asg = svc.asg(slot).inputs
        capacity = release.slot(slot).capacity
        assert (asg["minSize"], asg["maxSize"], asg["desiredCapacity"]) == (capacity, capacity, capacity)
        assert asg["targetGroupArns"] == [svc.tg(slot).id]
        assert asg["healthCheckType"] == "ELB"
        assert asg["healthCheckGracePeriod"] == cfg.health_check_grace_period
        assert asg["vpcZoneIdentifiers"] == (network.instance_subnet_ids or network.subnet_ids)
        lt = svc.lt(slot)
        assert asg["launchTemplate"] == {"id": lt.id, "version": str(lt.outputs["latestVersion"])}
        tags = {t["key"]: t["value"] for t in asg["tags"] if t["propagateAtLaunch"]}
        assert tags["rfs-deploy:slot"] == slot and tags["rfs-deploy:service"] == name


@pytest.mark.parametrize(("path", "name"), CASES)
def test_instance_refresh_preferences(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg, release = config.services[name], config.release[name]
    prefs = refresh_preferences(
        rolling_settings(cfg.strategy, release),
        instance_count=cfg.instance_count,
        grace_period=cfg.health_check_grace_period,
        auto_rollback=cfg.deploy.auto_rollback,
        guarded=release.rolling is not None,
    )
    for slot in SLOTS:
        refresh = svc.asg(slot).inputs["instanceRefresh"]
        assert refresh["strategy"] == "Rolling"
        guard = {
            "autoRollback": cfg.deploy.auto_rollback,
            "alarmSpecification": {
                "alarms": [svc.alarm("5xx", slot).outputs["name"], svc.alarm("p99", slot).outputs["name"]]
            },
        }
        assert as_plain(refresh["preferences"]) == {
            "minHealthyPercentage": prefs.min_healthy_percentage,
            "maxHealthyPercentage": prefs.max_healthy_percentage,
            "checkpointPercentages": list(prefs.checkpoint_percentages),
            "checkpointDelay": str(prefs.checkpoint_delay),
            "instanceWarmup": str(prefs.instance_warmup),
            "skipMatching": True,
            # the alarms guard a rolling release's forward refresh only (refresh.py)
            **(guard if release.rolling is not None else {"autoRollback": False}),
        }


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_alarms(path: Path, name: str) -> None:
    config, svc = view(path, name)
    analysis = config.services[name].analysis
    period = alarm_period(analysis)
    lb_dim = svc.load_balancer.outputs["arnSuffix"]
    for slot in SLOTS:
        dims = {"TargetGroup": svc.tg(slot).outputs["arnSuffix"], "LoadBalancer": lb_dim}
        rate = svc.alarm("5xx", slot).inputs
        assert rate["threshold"] == analysis.max_error_rate
        assert rate["comparisonOperator"] == "GreaterThanThreshold"
        queries = {q["id"]: q for q in rate["metricQueries"]}
        expression = queries["error_rate"]["expression"]
        assert expression == error_rate_expression(analysis.alarm_min_requests)
        assert expression.startswith(f"IF(requests >= {analysis.alarm_min_requests}, ")
        assert queries["error_rate"]["returnData"] is True
        for query_id, metric in (("errors", "HTTPCode_Target_5XX_Count"), ("requests", "RequestCount")):
            assert as_plain(queries[query_id]["metric"]) == {
                "namespace": "AWS/ApplicationELB",
                "metricName": metric,
                "dimensions": dims,
                "period": period,
                "stat": "Sum",
            }
            assert queries[query_id]["returnData"] is False
        p99 = svc.alarm("p99", slot).inputs
        assert (p99["metricName"], p99["extendedStatistic"], p99["dimensions"]) == (
            "TargetResponseTime",
            "p99",
            dims,
        )
        assert p99["threshold"] == analysis.max_p99_latency
        cpu = svc.alarm("cpu", slot).inputs
        assert (cpu["namespace"], cpu["metricName"], cpu["statistic"]) == (
            "AWS/EC2",
            "CPUUtilization",
            "Average",
        )
        assert cpu["dimensions"] == {"AutoScalingGroupName": svc.asg(slot).outputs["name"]}
        assert cpu["threshold"] == analysis.max_cpu
        for alarm in (rate, p99, cpu):
            assert alarm["evaluationPeriods"] == alarm["datapointsToAlarm"] == analysis.failure_limit
            assert alarm["treatMissingData"] == "notBreaching"
            assert alarm.get("period", period) == period


@pytest.mark.parametrize(("path", "name"), OWN_ALB_CASES)
def test_outputs_name_the_real_resources(path: Path, name: str) -> None:
    config, svc = view(path, name)
    cfg = config.services[name]
    out = parse_outputs(svc.run.outputs, name)
    lb = svc.load_balancer.outputs
    assert (out.load_balancer_arn, out.load_balancer_dimension, out.dns_name) == (
        lb["arn"],
        lb["arnSuffix"],
        lb["dnsName"],
    )
    assert out.load_balancer_dimension.startswith("app/")
    assert (out.listener_arn, out.test_listener_arn) == (svc.listener.id, svc.test_listener.id)
    assert (out.listener_port, out.test_listener_port) == (cfg.listener_port, cfg.test_listener_port)
    for slot in SLOTS:
        s = out.slot(slot)
        assert s.target_group_arn == svc.tg(slot).outputs["arn"]
        assert s.target_group_dimension == svc.tg(slot).outputs["arnSuffix"]
        assert s.target_group_dimension.startswith("targetgroup/")
        assert s.asg_name == svc.asg(slot).outputs["name"]
        assert s.alarm_names == tuple(svc.alarm(kind, slot).outputs["name"] for kind in ("5xx", "p99", "cpu"))


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_every_resource_is_tagged_with_its_service(path: Path) -> None:
    config, run = evaluated(path)
    for resource in run.resources:
        if not resource.custom:
            continue
        tags = resource.inputs.get("tags")
        if resource.type == T_ASG:
            tags = {t["key"]: t["value"] for t in tags}
        if LOAD_BALANCER_TAG in tags:  # a shared load balancer's, of no one service
            assert tags[LOAD_BALANCER_TAG] in config.load_balancers, resource.name
            assert "rfs-deploy:service" not in tags, resource.name
        else:
            assert tags["rfs-deploy:service"] in config.services, resource.name
        assert tags["rfs-deploy:stack"] == run.stack
        for key, value in config.tags.items():
            assert tags[key] == value
