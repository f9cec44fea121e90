"""`python -m deploy`: the command line (deploy.cli)."""

from __future__ import annotations

import sys

from deploy.cli import main

sys.exit(main())
