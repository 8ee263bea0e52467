"""Connections of both servers, kept honest: slow clients are timed out, and no local
process can hold so many connections that agents cannot reach the router.

The server (`ironrt.wire`) parses HTTP with httptools and keeps these limits:

- a **header deadline**: a request's headers must arrive whole within `header_timeout` of
  the connection opening (or of the request's first byte on a kept-alive connection). A
  slowloris client sending a byte a second, or a client that connects and says nothing,
  is answered 408 and closed;
- a **body timeout**: no more than `body_timeout` seconds between two pieces of a body
  (the clock stops while the server itself has paused reading);
- an **idle keep-alive timeout**: a connection with no request in progress is closed
  after `keepalive_timeout`;
- **caps on connections**, per peer and in total. A peer is the client's address on TCP
  and its user id on the Unix socket. On loopback every local process has the same
  address, so the caps alone would let one process lock agents out; instead, a connection
  over a cap first **evicts the oldest connection that is not in the middle of a request**
  (silent, or between requests, or still trickling its headers). Only when every
  connection is busy with a request is the new one refused, at once, with a 503.

Once a request's headers are in, nothing here limits it: an LLM call may stream for many
minutes, and its budget, not a timer, is what bounds it.

The book and its limits live in `ironrt.wire.guard`, the timers in the protocol
(`ironrt.wire.connection`); this module is where the policy is told and named.
"""

from __future__ import annotations

from ironrt.wire.guard import ConnectionLimits, Guard

__all__ = ["ConnectionLimits", "Guard"]
