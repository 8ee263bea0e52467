"""The smallest agent: prints and exits. No LLM, no key.

ironrt start agents/hello.py --budget 5
ironrt logs hello
"""

import os
import sys

print(f"hello from agent {os.environ.get('IRONRT_AGENT_ID', '(not under ironrt)')}")
if sys.argv[1:]:
    print("arguments:", " ".join(sys.argv[1:]))
print("the router is at", os.environ.get("IRONRT_ROUTER_URL", "(not set)"))
