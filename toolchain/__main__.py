"""`python -m svt_deploy` runs the svt-deploy CLI (the same entry point as the script)."""

import sys

from svt_deploy.cli import main

sys.exit(main())
