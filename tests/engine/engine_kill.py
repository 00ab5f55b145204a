"""A driver process that dies: ``python engine_kill.py STACK_FILE WORK_DIR STEP`` opens the engine
sandbox kept in WORK_DIR, starts a canary of api-service to v2.0.0 and SIGKILLs itself when plan
step STEP (0-based) starts, leaving the stack, the Pulumi state and the sandbox session as a
crashed machine would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from engine_support import SERVICE, engine_sandbox

from rfs_deploy.drive import events
from rfs_deploy.drive.driver import Driver


def main(stack_file: str, work_dir: str, step: int) -> None:
    def die(event: Any) -> None:
        if isinstance(event, events.StepStarted) and event.index == step:
            os.kill(os.getpid(), signal.SIGKILL)

    with engine_sandbox(Path(stack_file), Path(work_dir), scenario="healthy") as sandbox:
        seams = sandbox.seams()
        seams.listeners.append(die)
        asyncio.run(Driver(seams).deploy(SERVICE, "v2.0.0"))
    raise SystemExit("the deployment ended before the step that kills it")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
