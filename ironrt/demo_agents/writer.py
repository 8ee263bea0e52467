"""Demo agent: streams drafts with the anthropic SDK (claude-haiku-4-5)."""

import time

from anthropic import Anthropic

client = Anthropic()  # key and base URL come from the environment ironrt gives the agent
for draft in range(1, 5):
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=300,
        messages=[{"role": "user", "content": f"Draft {draft} of a haiku about supervisors."}],
    ) as stream:
        text = "".join(stream.text_stream)
    print(f"draft {draft}: {text}", flush=True)
    time.sleep(0.6)
