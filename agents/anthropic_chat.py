"""A message and a streamed one with the official anthropic SDK.

Under ironrt, ANTHROPIC_API_KEY holds the agent's own token and ANTHROPIC_BASE_URL
points at the router.

    ironrt start agents/anthropic_chat.py --budget 1
"""

import os

from anthropic import Anthropic

MODEL = os.environ.get("MODEL", "claude-haiku-4-5")
client = Anthropic()

message = client.messages.create(
    model=MODEL,
    max_tokens=200,
    messages=[{"role": "user", "content": "Say hello in five words."}],
)
print(message.content[0].text if message.content[0].type == "text" else message.content[0])
print("usage:", message.usage)

with client.messages.stream(
    model=MODEL,
    max_tokens=200,
    messages=[{"role": "user", "content": "Count from one to five."}],
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
    print("\nusage:", stream.get_final_message().usage)
