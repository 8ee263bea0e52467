"""Demo agent: asks a series of questions with the openai SDK (gpt-4o-mini)."""

import time

from openai import OpenAI

QUESTIONS = [
    "What is a supervisor process?",
    "Why cap an agent's spend?",
    "What is a circuit breaker?",
    "What does SIGTERM mean?",
    "Why stream completions?",
    "What is a token bucket?",
    "What is PII?",
    "Why log every LLM call?",
    "What is a process group?",
    "What is WAL mode?",
]

client = OpenAI()  # key and base URL come from the environment ironrt gives the agent
for question in QUESTIONS:
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": question}],
        max_tokens=200,
    )
    print(f"Q: {question}\nA: {reply.choices[0].message.content}", flush=True)
    time.sleep(0.4)
