"""``rfs-deploy dashboard``: a local web page over a stack's deployments (docs/dashboard.md).

:mod:`rfs_deploy.dashboard.server` is the HTTP server (the standard library's, one thread per
request): the token check, the JSON state the page polls, and the buttons, which run the
``rfs-deploy`` commands as child processes. :mod:`rfs_deploy.dashboard.page` is the page itself.
What the page shows is computed by the caller (the command line's ``status`` / ``history``
views, :mod:`rfs_deploy.cli.dashboard`) and handed in as a function, so this package imports
nothing of the command line.
"""
