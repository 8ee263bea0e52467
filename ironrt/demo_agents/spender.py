"""Demo agent: sends long prompts to gpt-4o until its small budget runs out.

The router refuses the call that would overspend with HTTP 402; the openai SDK raises
it as an exception, which this agent reports before giving up, as a real one would.
"""

import time

import openai
from openai import OpenAI

DOCUMENT = "The quarterly report covers revenue, costs and forecasts. " * 52

client = OpenAI()
for call in range(1, 41):
    try:
        reply = client.chat.completions.create(
            model="gpt-4o",
            max_tokens=64,
            messages=[{"role": "user", "content": f"Summarize part {call}:\n{DOCUMENT}"}],
        )
    except openai.APIStatusError as exc:
        print(f"call {call} refused: HTTP {exc.status_code}: {exc.message}", flush=True)
        break
    tokens = reply.usage.prompt_tokens if reply.usage else "?"
    print(f"call {call}: {tokens} prompt tokens", flush=True)
    time.sleep(0.15)
