"""The Pulumi components of rfs-deploy (they run inside ``pulumi up``).

``program.run`` is the program; ``service.Service`` one service with its two slots
(``slot.Slot``), listener set (``listeners.Listeners``) and alarms (``alarms``);
``refresh`` maps rolling settings to instance refresh preferences. The harness that evaluates
the program under Pulumi's mock runtime (for the sandbox, tests and benchmarks) is not part of
the program: it is :mod:`rfs_deploy.sim.mockrun`.
"""
