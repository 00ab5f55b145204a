"""``python -m rfs_deploy``: the ``rfs-deploy`` command line."""

from rfs_deploy.cli import main

raise SystemExit(main())
