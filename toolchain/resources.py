"""Where the package's data lives: board profiles, C templates and the reference checkpoint.

Read through importlib.resources so that an editable checkout and an installed wheel find
the same files; both unpack to real directories, which gcc and jinja2 need.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib.resources import files
from pathlib import Path


def package_dir(package: str) -> Path:
    return Path(str(files(package)))


BOARDS_DIR = Path(os.environ.get("SVT_BOARDS_DIR") or package_dir("svt_deploy.board_profiles"))
TEMPLATES_DIR = package_dir("svt_deploy.firmware_templates")
REFERENCE_WEIGHTS = package_dir("svt_deploy.examples") / "reference_svit.pt"


@functools.cache
def templates_digest() -> str:
    """Hash of every C and Jinja template: a project generated from other templates (an
    older svt-deploy, an edited kernel) is stale."""
    h = hashlib.sha256()
    for f in sorted(TEMPLATES_DIR.rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(f.relative_to(TEMPLATES_DIR).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:20]
