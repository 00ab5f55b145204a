"""One service's stack outputs (its load balancer, listeners and two slots) for the provider tests."""

from __future__ import annotations

from rfs_deploy.outputs import ServiceOutputs, SlotOutputs

LB = "app/api/50dc6c495c0c9188"
OUTPUTS = ServiceOutputs(
    load_balancer_arn=f"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/{LB}",
    load_balancer_dimension=LB,
    dns_name="api-1234.us-east-1.elb.amazonaws.com",
    listener_arn="arn:listener/prod",
    test_listener_arn="arn:listener/test",
    listener_port=80,
    test_listener_port=8080,
    slots={
        slot: SlotOutputs(
            target_group_arn=f"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/api-{slot}/{n}",
            target_group_dimension=f"targetgroup/api-{slot}/{n}",
            asg_name=f"api-{slot}",
            alarm_names=(f"api-{slot}-5xx", f"api-{slot}-p99"),
        )
        for slot, n in (("blue", "73e2d6bc24d8a067"), ("green", "1e2d6bc24d8a0673"))
    },
)
