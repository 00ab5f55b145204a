"""The local sandbox (SPEC C2): simulated AWS, virtual time and a backend that runs the real program.

    Sandbox            moto + physics + SandboxBackend + the production adapters, for one stack
    SandboxBackend     StackBackend: the real program under Pulumi's mock runtime, applied to moto
    VirtualClock       Clock whose sleeps advance time at once and tick the physics
    Scenario           traffic, per-version behaviour, metric flakiness (YAML, see scenario.py)
    load_scenario      a built-in scenario by name or a user's file, validated
    World              the physics: traffic, metrics, fleet behaviour, instance refresh, alarms

Everything moto 5.2.5 lacks (instance refresh, p99, metric math, alarm evaluation, target
health, launch templates with user data) is made up for here and only here.

Names are imported lazily: ``from rfs_deploy.sim import VirtualClock`` does not load moto or Pulumi.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rfs_deploy.sim.backend import SandboxBackend
    from rfs_deploy.sim.clock import VirtualClock
    from rfs_deploy.sim.sandbox import Sandbox
    from rfs_deploy.sim.scenario import Behaviour, Scenario, builtin_scenarios, load_scenario, parse_scenario
    from rfs_deploy.sim.session_lock import session_directory
    from rfs_deploy.sim.world import World

_WHERE = {
    "Behaviour": "scenario",
    "Sandbox": "sandbox",
    "SandboxBackend": "backend",
    "Scenario": "scenario",
    "VirtualClock": "clock",
    "World": "world",
    "builtin_scenarios": "scenario",
    "load_scenario": "scenario",
    "parse_scenario": "scenario",
    "session_directory": "session_lock",
}

__all__ = [
    "Behaviour",
    "Sandbox",
    "SandboxBackend",
    "Scenario",
    "VirtualClock",
    "World",
    "builtin_scenarios",
    "load_scenario",
    "parse_scenario",
    "session_directory",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rfs_deploy.sim' has no attribute {name!r}")
    return getattr(import_module(f"rfs_deploy.sim.{_WHERE[name]}"), name)
