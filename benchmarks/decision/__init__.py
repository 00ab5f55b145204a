"""Decision benchmark: how well and how cheaply rfs-deploy's judge decides, next to the policies
other tools use, on the same simulated traffic (issue 6). Run ``python -m benchmarks.decision``;
``benchmarks/README.md`` has the results and the method."""
