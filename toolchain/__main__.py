"""`python -m toolchain` runs the svt-deploy CLI (the same entry point as the script)."""

import sys

from toolchain.cli import main

sys.exit(main())
