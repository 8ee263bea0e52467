"""The detectors' rules of each agent, and what its calls do with each type of finding.

`RulesFiles` compiles the home's `pii.toml` and an agent's own (its entities add to the
home's) into `Rules`, once per version of the files: a file is looked at again at most
every `RECHECK_S`, so editing `pii.toml` takes effect within seconds without a restart
and without a `stat` per call. A file that turns invalid while the daemon runs keeps its
last good version in force (protection never silently drops) and the error is logged;
one that was never valid fails the agent's calls closed.

`plan_for` turns the agent's `pii`/`pii_types` and its scopes' floors into a `PiiPlan`
(type -> action, the strictest of agent and scopes), cached on the agent until one of
those settings is replaced.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ironrt.config import Settings
from ironrt.errors import ConfigError
from ironrt.governance.agent import AgentGovernance
from ironrt.pii.entities import Entity, EntityError, load_entities, merge_entities
from ironrt.pii.rules import DEFAULT_RULES, Rules
from ironrt.values import DEFAULT_PII_REGIONS, pii_action, strictest

__all__ = ["RECHECK_S", "PiiPlan", "RulesFiles", "plan_for", "rules_files"]

log = logging.getLogger("ironrt.pii")

#: Seconds between two looks at a `pii.toml` for changes.
RECHECK_S = 2.0
_PLAN = "pii_plan"

Stamp = tuple[int, int] | None  # (mtime_ns, size); None: no file


def _stamp(path: Path) -> Stamp:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size)


@dataclass(slots=True)
class _File:
    """One `pii.toml` as last read."""

    path: Path
    stamp: Stamp = None
    entities: tuple[Entity, ...] = ()
    checked_at: float = -1e18
    #: False until one version was read without error.
    good: bool = False


class RulesFiles:
    """Rules for the home and for each agent's own `pii.toml`, re-read when they change."""

    def __init__(
        self,
        home_file: Path | None,
        *,
        regions: tuple[str, ...] = DEFAULT_PII_REGIONS,
        private_ips: bool = True,
        clock: Callable[[], float] = time.monotonic,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self._base = Rules(regions=regions, private_ips=private_ips)
        self._clock = clock
        self._recheck_s = recheck_s
        self._home = _File(home_file) if home_file is not None else None
        self._agents: dict[str, _File] = {}
        #: (home entities, agent entities) -> Rules: the same object while nothing changed,
        #: so `Rules.only` and the plans cached on agents stay valid. Keyed by the tuples
        #: themselves (entities compare by identity), never by `id()`, which a new tuple
        #: may reuse once an edited file's old one is gone.
        self._rules: dict[tuple[tuple[Entity, ...], tuple[Entity, ...]], Rules] = {}
        if self._home is not None:
            self._refresh(self._home, strict=True)  # a broken home file stops the daemon

    def _refresh(self, f: _File, *, strict: bool = False) -> None:
        now = self._clock()
        if f.good and now - f.checked_at < self._recheck_s:
            return
        f.checked_at = now
        stamp = _stamp(f.path)
        if f.good and stamp == f.stamp:
            return
        try:
            entities = load_entities(f.path)
        except EntityError:
            if f.good and not strict:
                log.error("keeping the previous PII entities of %s: it is now invalid", f.path)
                f.stamp = stamp  # reported once per change, not per call
                return
            raise
        f.stamp, f.entities, f.good = stamp, entities, True

    def rules_for(self, pii_file: str | None) -> Rules:
        """The rules of an agent with this `pii.toml` (None: the home's alone)."""
        home: tuple[Entity, ...] = ()
        if self._home is not None:
            self._refresh(self._home)
            home = self._home.entities
        own: tuple[Entity, ...] = ()
        if pii_file is not None:
            f = self._agents.get(pii_file)
            if f is None:
                f = self._agents[pii_file] = _File(Path(pii_file))
            self._refresh(f)
            own = f.entities
        if not home and not own:
            return self._base
        key = (home, own)
        rules = self._rules.get(key)
        if rules is None:
            if len(self._rules) > 1024:
                self._rules.clear()
            rules = Rules(
                regions=self._base.regions,
                private_ips=self._base.private_ips,
                entities=merge_entities(home, own),
            )
            self._rules[key] = rules
        return rules

    def check_types(self, types: Mapping[str, str] | None, pii_file: str | None) -> None:
        """Refuse a selection naming a type no detector of this agent reports (a typo)."""
        labels = self.rules_for(pii_file).labels
        for name in types or ():
            if name != "*" and name not in labels:
                close = difflib.get_close_matches(name, labels, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ValueError(
                    f"`pii_types`: unknown PII type {name!r}{hint}; the types are "
                    f"{', '.join(labels)}, or * for every other type"
                )


@dataclass(frozen=True, slots=True, eq=False)
class PiiPlan:
    """What one call does with each type of finding."""

    #: type -> "detect" | "redact" | "block", for every type acted on (others are off).
    actions: Mapping[str, str]
    #: The rules reporting only the types acted on.
    rules: Rules
    #: The rules reporting only the types redacted (what a reply's stream must hide).
    redact_rules: Rules
    redact: frozenset[str]
    block: frozenset[str]

    @property
    def off(self) -> bool:
        return not self.actions

    @property
    def redacting(self) -> bool:
        return bool(self.redact)


def _plan(
    labels: Iterable[str],
    rules: Rules,
    mode: str,
    floors: list[tuple[str, Mapping[str, str] | None]],
    types: Mapping[str, str] | None,
) -> PiiPlan:
    actions: dict[str, str] = {}
    for label in labels:
        action = pii_action(label, mode, types)
        for floor_mode, floor_types in floors:
            action = strictest(action, pii_action(label, floor_mode, floor_types))
        if action != "off":
            actions[label] = action
    redact = frozenset(t for t, a in actions.items() if a == "redact")
    block = frozenset(t for t, a in actions.items() if a == "block")
    acted = frozenset(actions)
    return PiiPlan(
        actions=actions,
        rules=rules.only(None if len(acted) == len(rules.labels) else acted),
        redact_rules=rules.only(redact),
        redact=redact,
        block=block,
    )


def plan_for(gov: AgentGovernance, rules: Rules = DEFAULT_RULES) -> PiiPlan:
    """The plan of the agent's next call: its settings, with its scopes' floors applied.

    Cached on the agent: settings are replaced, never mutated, so identity says whether
    the cached plan still holds.
    """
    floors: list[tuple[str, Mapping[str, str] | None]] = [
        (s.pii or "off", s.pii_types) for s in gov.scopes if s.pii or s.pii_types
    ]
    key = (rules, gov.pii, gov.pii_types, *(x for f in floors for x in f))
    cached = gov.state.get(_PLAN)
    if cached is not None and cached[0] == key:
        plan: PiiPlan = cached[1]
        return plan
    plan = _plan(rules.labels, rules, gov.pii, floors, gov.pii_types)
    gov.state[_PLAN] = (key, plan)
    return plan


def rules_files(settings: Settings) -> RulesFiles:
    """The home's rules as the settings say; an invalid home `pii.toml` is a `ConfigError`."""
    try:
        return RulesFiles(
            settings.pii_path,
            regions=settings.pii_regions,
            private_ips=settings.pii_private_ips,
        )
    except EntityError as exc:
        raise ConfigError(str(exc)) from None
