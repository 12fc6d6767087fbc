"""External programs the stages run, and the one check that they are installed.

Every stage asks ``require_tool`` before it runs a program, so a missing one is always the
same one-line error naming the Debian/Ubuntu package that provides it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .errors import SvtError

# program -> the apt package that installs it
PACKAGES = {
    "gcc": "gcc",
    "make": "make",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-objcopy": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "clang": "clang",
    "openocd": "openocd",
    "st-flash": "stlink-tools",
}


def install_hint(name: str, package: str | None = None) -> str:
    return f"sudo apt-get install {package or PACKAGES.get(name, name)}"


def require_tool(name: str, package: str | None = None) -> str:
    """The path of program ``name``; if it is not on PATH, a one-line SvtError naming the
    apt package (``package``, else the known one for ``name``)."""
    path = shutil.which(name)
    if path is None:
        raise SvtError(f"{name} not found; install it with: {install_hint(name, package)}")
    return path


def require_cross_toolchain() -> None:
    """make, arm-none-eabi-gcc and newlib-nano for it: what the firmware build needs."""
    require_tool("make")
    gcc = require_tool("arm-none-eabi-gcc")
    libc = subprocess.run([gcc, "-mthumb", "-mcpu=cortex-m4", "-mfloat-abi=hard",
                           "-mfpu=fpv4-sp-d16", "--specs=nano.specs",
                           "-print-file-name=libc_nano.a"],
                          capture_output=True, text=True, check=False)
    if not os.path.isabs(libc.stdout.strip()) or not Path(libc.stdout.strip()).is_file():
        raise SvtError("newlib for arm-none-eabi not found; install it with: "
                       f"{install_hint('newlib', 'libnewlib-arm-none-eabi')}")
