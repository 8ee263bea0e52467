"""The governance kernel: what a governed LLM call is and how its policies decide.

`Flow` (one call, with a typed field for every decision that crosses a module), the
`Pipeline` of policies, the budget ledger (the single owner of limits, holds and spend),
admission and pricing. No I/O, and nothing from the router, the supervisor, the control
API or the CLI: the daemon's router and library mode (`ironrt.protect`) run the same
kernel, each over its own transport.
"""
