"""``python -m benchmarks.decision``: see :mod:`benchmarks.decision.run`."""

from benchmarks.decision.run import main

raise SystemExit(main())
