"""The driver: runs one release of one service as a plan of steps, and rolls it back.

Its modules, each importing only modules listed below it (``python tools/import_graph.py``
prints the graph and fails on a cycle; a test holds this list to it):

    driver          Driver: deploy, resume, abort, rollback, plan (the front door)
    runner          Runner: the plan loop, and HANDLERS, the one table of step handlers
    analysis        Analyst: the observing steps (analyze, watch-refresh, decide, the load probe)
    rollback        roll_back / restore: back to a checkpoint on a DeploymentStack (no Runner)
    stack           DeploymentStack: the one place a stack update is written and journal-tagged
    validate_step   the validate step: validation hooks, then the HTTP checks
    exclusive       one driver operation per stack at a time within a process
    probe           the load probe: the idle slot judged under load
    command_hook    a command run as a hook (a subprocess, its output redacted)
    hooks           pre-deployment, validation, post-deployment and post-rollback hooks
    context         Seams: what a deployment runs against
    webhooks        event webhooks (each event posted, in order, retried) and confirm webhooks
    ab              the A/B decision: which variant wins
    judge           the step judge: the windows of one step, and when the step is over
    history         the baseline's history: its hour before the first traffic shift
    plans           the pure plan of each strategy (steps from a release state and a version)
    cancel          stopping a deployment safely on a signal
    journal         stack history read as the deployment journal (open, finished, checkpoints)
    pulumi_backend  the production StackBackend (the Pulumi Automation API)
    rules           the rules of one analysis window
    validation      the HTTP checks of a slot
    summary         the figures that sum a deployment record up
    outcomes        StepOutcome, StepFailed: what every step handler returns or raises
    overrides       a deployment's settings: the stack's plus per-deployment overrides
    steps           the step types: changes of the release state, and observations
    protocols       the seams' Protocols (stack, metrics, traffic, fleet, alarms, clock)
    records         deployment records and their store
    stats           the statistics behind the judge
    events          what the runner reports to its listeners

The journal tag every update message starts with is :mod:`rfs_deploy.journal_tags`, outside this
package: the Pulumi program reads it too. Nothing is imported here, so
``import rfs_deploy.drive.journal`` loads the journal alone.
"""
