"""The local stack and the `crm` command line: development tools, never deployed."""

import sys
from pathlib import Path

# `infra/`, `functions/` and `app.py` are not installed packages: they are read from the
# checkout these tools belong to, wherever the `crm` command is run from.
PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.append(str(PROJECT_DIR))
