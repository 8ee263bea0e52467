"""The offline provider's old address. It lives in `ironrt.providers` now: each API
surface answers for itself (`ironrt.providers.surfaces`) and `ironrt.providers.offline`
dispatches. Kept so that code importing it from here keeps working; new code imports
`ironrt.providers.offline`.
"""

from __future__ import annotations

from ironrt.providers.offline import DEFAULT_MODELS, OfflineReply, offline_response

__all__ = ["DEFAULT_MODELS", "OfflineReply", "offline_response"]
