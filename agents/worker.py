"""A long-running agent: one LLM call per period until told to stop.

SIGTERM (what `ironrt stop` sends first) ends the current step and exits cleanly; the
agent is killed only if it ignores it past the grace period.

    ironrt start agents/worker.py --budget 2 --restart on-failure
    ironrt top
"""

import os
import signal
import threading

import openai
from openai import OpenAI

PERIOD_S = float(os.environ.get("PERIOD_S", "2"))
stopping = threading.Event()
signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())

client = OpenAI()
step = 0
while not stopping.is_set():
    step += 1
    try:
        reply = client.chat.completions.create(
            model=os.environ.get("MODEL", "gpt-4o-mini"),
            messages=[{"role": "user", "content": f"Give me fact number {step} about otters."}],
            max_tokens=100,
        )
        print(f"[{step}] {reply.choices[0].message.content}", flush=True)
    except openai.APIStatusError as exc:  # 402 when the budget is spent, 429 when rate-limited
        print(f"[{step}] refused ({exc.status_code}): {exc.message}", flush=True)
    stopping.wait(PERIOD_S)
print(f"stopped after {step} steps", flush=True)
