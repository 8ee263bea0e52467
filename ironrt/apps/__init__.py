"""The apps file (`ironrt.toml`): a fleet of agents declared in one file, as PM2's ecosystem
file declares one. `ironrt up` and `ironrt down` (`ironrt.cli.apps`) are its commands;
this package is everything they know about the file, with no command line in it.

- `schema`: the file as written (`AgentEntry`) and once resolved (`AgentSpec`, `App`).
- `problems`: what is wrong with a file, worded as one line naming the file, the entry
  and the key.
- `load`: finding, reading, checking and resolving the file.
- `plan`: what `up` or `down` does for one entry, given the daemon's records of its name.

Three rules shape the code:

- The whole file is checked before the daemon is asked anything, so a typo never leaves
  half a fleet started; every problem is one line naming the file, the entry and the key
  (exit 2). The schema is msgspec Structs that forbid unknown fields, converted entry by
  entry so that an error can name its entry (msgspec's own path elides dict keys).
- "Changed" is decided by a digest, recorded on the agent (`spec_digest`): SHA-256 of the
  canonical JSON of the entry once resolved (absolute paths, defaults filled in, units
  converted), its `env` included. The caller's own environment is not part of it: opening
  a new shell must not restart the fleet.
- Every request names an agent by id, never by name: the name is what is being decided.
  After `up` each name has one record, so `ironrt logs NAME` is never ambiguous.
"""
