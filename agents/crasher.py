"""Exits with code 3 after a moment: try it with a restart policy.

ironrt start agents/crasher.py --restart on-failure --max-restarts 2
ironrt events --agent crasher
"""

import sys
import time

print("working...", flush=True)
time.sleep(float(sys.argv[1]) if sys.argv[1:] else 1.0)
print("something went wrong", file=sys.stderr, flush=True)
sys.exit(3)
