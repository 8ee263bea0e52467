"""Starts a child that starts a grandchild, all running forever: `ironrt stop` still
ends all three, because it signals the agent's whole process group and tree.

    id=$(ironrt start agents/spawner.py)
    ironrt metrics $id      # 3 processes
    ironrt stop $id         # ... and none left
"""

import subprocess
import sys
import time

SLEEPER = "import time\nwhile True: time.sleep(1)"
CHILD = (
    "import subprocess, sys, time\n"
    f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}])\n"
    "while True: time.sleep(1)"
)

child = subprocess.Popen([sys.executable, "-c", CHILD])
print(f"spawned child {child.pid} (which spawns a grandchild)", flush=True)
while True:
    time.sleep(1)
