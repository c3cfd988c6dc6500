#!/usr/bin/env python3
"""The original entry point: `python home/scripts/register_home.py --cloudserver-url ...`."""

import sys
from pathlib import Path

try:
    from home.register import main
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from home.register import main

if __name__ == "__main__":
    sys.exit(main())
