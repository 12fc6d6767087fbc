"""Where the package's data lives: board profiles, C templates and the reference checkpoint.

Read through importlib.resources so that an editable checkout and an installed wheel find
the same files; both unpack to real directories, which gcc and jinja2 need.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path


def package_dir(package: str) -> Path:
    return Path(str(files(package)))


BOARDS_DIR = Path(os.environ.get("SVT_BOARDS_DIR") or package_dir("svt_deploy.board_profiles"))
TEMPLATES_DIR = package_dir("svt_deploy.firmware_templates")
REFERENCE_WEIGHTS = package_dir("svt_deploy.examples") / "reference_svit.pt"
