"""The dashboard tests run ``rfs-deploy`` as a user would, with the command-line tests' helpers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
