#!/usr/bin/env python3
"""The original entry point: `python home/scripts/generate_keys.py [--output PATH] [--force]`
writes the home's SSH key pair and prints the public key (the work is in home/keys.py)."""

import sys
from pathlib import Path

try:
    from home.keys import main
except ImportError:  # run as a file from a checkout: sys.path[0] is home/scripts, not the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from home.keys import main

if __name__ == "__main__":
    sys.exit(main())
