"""The policies a governed call meets, in order: budget, safety (allowlist, PII),
reliability (rate limits, breaker, retries). Each is a `governance.policy.Policy`."""
