"""Model allowlists: a scope may name the models its calls may use (glob patterns).

Checked for every endpoint that names a model, in every scope of the call, before
anything is reserved or forwarded; a refusal is a provider-shaped 403 that names the model
and the scope, with `x-should-retry: false` (retrying cannot help).
"""

from __future__ import annotations

from ironrt.governance.flow import Flow, Refusal
from ironrt.governance.policy import Policy
from ironrt.protocol.events import ModelRefused


class AllowlistPolicy(Policy):
    name = "allowlist"

    def request(self, flow: Flow) -> None:
        if not flow.model:
            return
        for scope in flow.agent.scopes:
            if scope.models is not None and not scope.allows(flow.model):
                patterns = ", ".join(scope.models or ())
                flow.refuse(
                    Refusal(
                        403,
                        f"ironrt: model {flow.model} is not allowed in {scope.key} "
                        f"(allowed: {patterns})",
                        type="permission_error",
                        code="model_not_allowed",
                        policy=self.name,
                    )
                )
                flow.emit(ModelRefused(model=flow.model, scope=scope.key))
                return
