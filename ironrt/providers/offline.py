"""The built-in offline provider: real API shapes, deterministic text, no network.

Each surface answers for itself (`ApiSurface.offline`, the shared planning in
`surfaces.replies`); this module finds the provider's adapter and the endpoint's surface
and turns a bad request into the provider's own 400. It serves every registered provider
with its family's shapes and its entry's models. `ironrt.testing.FakeUpstream` and the
offline transport both answer with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from ironrt.governance.flow import Endpoint, TokenUsage
from ironrt.providers.registry import REGISTRY, adapter
from ironrt.providers.surfaces.replies import BadRequest, OfflineCall, OfflineReply, error_reply

__all__ = ["DEFAULT_MODELS", "OfflineReply", "offline_response"]


def offline_response(
    adapter_name: str,
    endpoint: Endpoint,
    body: Any,
    *,
    path: str = "",
    usage: TokenUsage | None = None,
    now: float | None = None,
) -> OfflineReply:
    """Answer one request as the provider would; `usage` overrides the computed numbers
    (never a count's: a count follows the request's text).

    `path` is the request path (only `GET /v1/models/{id}` needs it).
    """
    provider = adapter(adapter_name)
    created = int(time.time() if now is None else now)
    call = OfflineCall(endpoint, provider.local_path(path), usage, created)
    try:
        return provider.surface(endpoint).offline(provider, body, call)
    except BadRequest as exc:
        return error_reply(provider, 400, str(exc), exc.param)


class _Models(Mapping[str, tuple[str, ...]]):
    """The models the offline provider lists, by provider (each entry's `models`)."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        return REGISTRY[name].models

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


#: Models the offline provider lists; those of the built-in providers are all priced by
#: genai-prices.
DEFAULT_MODELS: Mapping[str, tuple[str, ...]] = _Models()
