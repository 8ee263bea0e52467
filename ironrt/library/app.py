"""The router's app as library mode runs it: same parsing, policies, admission, relay
and settlement, fed by the SDK hook instead of a socket.

Three things differ from the daemon, each one overridden method:
- the agent is the scope the call was made in (`agent_for`), not an IC_TOKEN;
- the call goes where the client was going, with the client's own headers and key
  (`outgoing`, `upstream_of`): library mode holds no key of its own;
- there is no exact count at the budget margin (`count_sender`): the byte bound stands.
"""

from __future__ import annotations

from collections.abc import Mapping

from ironrt.governance.agent import AgentGovernance
from ironrt.library.calls import CURRENT_CALL
from ironrt.providers.base import ProviderAdapter
from ironrt.router.app import RouterApp
from ironrt.router.counting import Sender
from ironrt.router.exchange import Exchange
from ironrt.transports.base import Outgoing

#: Headers httpx computes itself for the request that goes out.
_RECOMPUTED = frozenset({"content-length", "host", "transfer-encoding", "connection"})


class LibraryApp(RouterApp):
    #: The agent ids of the scopes open now: a call of a closed scope is refused.
    live: set[str]

    def agent_for(
        self, x: Exchange, adapter: ProviderAdapter, headers: Mapping[str, str]
    ) -> tuple[bool, AgentGovernance | None]:
        call = CURRENT_CALL.get()
        if call is None:
            return False, None
        return True, call.gov if call.gov.agent_id in self.live else None

    def outgoing(
        self,
        adapter: ProviderAdapter,
        x: Exchange,
        target: str,
        headers: Mapping[str, str],
        content: bytes,
    ) -> Outgoing | None:
        call = CURRENT_CALL.get()
        assert call is not None
        kept = {k: v for k, v in headers.items() if k not in _RECOMPUTED}
        return Outgoing(x.method, call.base + target, kept, content)

    def upstream_of(self, adapter: ProviderAdapter, x: Exchange) -> str:
        call = CURRENT_CALL.get()
        base = call.base if call is not None else adapter.default_base_url
        return f"{adapter.name}:{base}"

    def count_sender(self, adapter: ProviderAdapter, headers: Mapping[str, str]) -> Sender | None:
        return None
