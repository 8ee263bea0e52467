"""OpenAI embeddings (`POST /v1/embeddings`): text in, vectors out, input tokens only.

Usage is `prompt_tokens`. The offline answer is a deterministic unit vector per input
(same text, same vector), as floats or, with `encoding_format: "base64"`, as the API's
little-endian float32 bytes.
"""

from __future__ import annotations

import base64
import hashlib
import math
import sys
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from ironrt.governance.flow import TextSlot, TokenUsage
from ironrt.providers.surfaces.base import ApiSurface
from ironrt.providers.surfaces.replies import (
    BadRequest,
    OfflineCall,
    OfflineReply,
    json_reply,
    require,
)
from ironrt.providers.texts import dict_value, int_value, str_setter

if TYPE_CHECKING:
    from ironrt.providers.base import ProviderAdapter

__all__ = ["EmbeddingsSurface"]

_DIMS = {"text-embedding-3-large": 3072}
_DEFAULT_DIMS = 1536


class _EmbeddingsShape(msgspec.Struct):
    model: str | None = None
    input: str | list[Any] | None = None


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for `text` (same text, same vector)."""
    raw = array("H", hashlib.shake_256(text.encode()).digest(dims * 2))
    values = [v / 32767.5 - 1.0 for v in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _inputs(value: Any) -> list[tuple[str, int]]:
    """(text, tokens) per input: strings at 4 characters a token, token arrays as given."""
    if isinstance(value, str):
        return [(value, max(1, math.ceil(len(value) / 4)))]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [(" ".join(map(str, value)), len(value))]
    if not isinstance(value, list) or not value:
        raise BadRequest("'input' must be a non-empty string or array.", "input")
    inputs = []
    for item in value:
        if isinstance(item, str):
            inputs.append((item, max(1, math.ceil(len(item) / 4))))
        elif isinstance(item, list) and all(isinstance(v, int) for v in item):
            inputs.append((" ".join(map(str, item)), max(1, len(item))))
        else:
            raise BadRequest("'input' must be a string or an array of strings.", "input")
    return inputs


class EmbeddingsSurface(ApiSurface):
    shape: ClassVar[type[msgspec.Struct] | None] = _EmbeddingsShape

    def input_extras(self, body: dict[str, Any]) -> tuple[int, bool, bool]:
        return 0, bool(body.get("tools")) or bool(body.get("functions")), False

    def usage_from_response(self, body: Any) -> TokenUsage | None:
        usage = dict_value(body).get("usage")
        if not isinstance(usage, dict):
            return None
        return TokenUsage(input_tokens=int_value(usage.get("prompt_tokens")))

    def request_texts(self, body: dict[str, Any], on_change: Callable[[], None]) -> list[TextSlot]:
        out: list[TextSlot] = []
        value = body.get("input")
        if isinstance(value, str):
            setter = str_setter(body, "input", on_change)
            out.append(TextSlot(("request", "input"), value, setter, "input"))
        elif isinstance(value, list):
            for i, text in enumerate(value):
                if isinstance(text, str):
                    setter = str_setter(value, i, on_change)
                    out.append(TextSlot(("request", "input", i), text, setter, "input"))
        return out

    def offline(self, adapter: ProviderAdapter, body: Any, call: OfflineCall) -> OfflineReply:
        body = require(body, "model", "input")
        model = body["model"]
        if not isinstance(model, str):
            raise BadRequest("'model' must be a string.", "model")
        inputs = _inputs(body["input"])
        dims = body.get("dimensions")
        if dims is None:
            dims = _DIMS.get(model, _DEFAULT_DIMS)
        if not isinstance(dims, int) or isinstance(dims, bool) or not 1 <= dims <= 8192:
            raise BadRequest("'dimensions' must be a positive integer.", "dimensions")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, (text, _tokens) in enumerate(inputs):
            vector = _vector(text, dims)
            embedding: Any = vector
            if as_base64:
                packed = array("f", vector)
                if sys.byteorder != "little":  # the API sends little-endian float32
                    packed.byteswap()
                embedding = base64.b64encode(packed.tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = call.usage.input_tokens if call.usage else sum(t for _, t in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json_reply(adapter, {"object": "list", "data": data, "model": model, "usage": usage})
