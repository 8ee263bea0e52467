"""A chat completion and a streamed one with the official openai SDK.

No configuration in the code: under ironrt, OPENAI_API_KEY holds the agent's own token
and OPENAI_BASE_URL points at the router, which adds the real key and keeps the budget.

    ironrt start agents/openai_chat.py --budget 1
"""

import os

from openai import OpenAI

MODEL = os.environ.get("MODEL", "gpt-4o-mini")
client = OpenAI()

reply = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Say hello in five words."}],
)
print(reply.choices[0].message.content)
print("usage:", reply.usage)

stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Count from one to five."}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print("\nusage:", chunk.usage)
