"""``python -m benchmarks.faults``: runs the fault table (see the package docstring)."""

import sys

from benchmarks.faults import main

if __name__ == "__main__":
    sys.exit(1 if any(not r["ok"] for r in main()) else 0)
