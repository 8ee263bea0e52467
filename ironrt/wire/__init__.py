"""ironrt's own HTTP/1.1 wire: the router's server and its upstream client, on asyncio
protocols with httptools parsing (no general-purpose HTTP framework on the hot path)."""
