"""Fresh virtual environments, holding only what one requirements file installs: a platform's view."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def fresh_venv(where: Path, requirements: Path) -> Path:
    """A new virtual environment at `where` with `requirements` installed; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    python = where / "bin/python"
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(requirements)]
    subprocess.run(install, check=True, capture_output=True)
    return python
