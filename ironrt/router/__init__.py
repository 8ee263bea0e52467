"""The router: the loopback HTTP server the agents' SDKs talk to. It runs each call through
the governance kernel over the HTTP or offline transport."""
