"""Decision benchmark: how well and how cheaply rfs-deploy's judge decides, next to the policies
other tools use, on the same simulated traffic (issue 6), and on traffic shaped like production's
(issue 15). Run ``python -m benchmarks.decision``; ``benchmarks/README.md`` has the method and the
sandbox-model results, ``benchmarks/decision/README.md`` the real-traffic cells and targets."""
