"""The control API: HTTP/1.1 + JSON over the daemon's Unix socket."""
