"""Statement-level enforcement: classify a statement, authorize it as the action its kind maps
to, and plan the masking of its result. Pure code shared by the node (which enforces) and the
control plane (which simulates), so both always agree.

An `Enforcer` belongs to one session (one identity on one connection under one bundle) and caches
decisions by statement text, so a repeated statement costs a dictionary lookup, not a parse.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from fnmatch import fnmatchcase

from pglast.parser import fingerprint as pg_fingerprint

from lockgate.bundle import BundleView
from lockgate.masking.plan import (
    RulesInForce,
    StatementPlan,
    column_masked,
    plan_statement,
    rules_for,
)
from lockgate.sql.classify import Classification, cedar_context, classify_cached
from lockgate.sql.lineage import lineage_cached, result_lineage
from lockgate.sql.shape import shape_key
from protos.lockgate.v1 import node_pb2 as pb

ACTION_OF_KIND = {"read": "read", "write": "write", "ddl": "ddl", "admin": "admin", "other": "read"}
CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class StatementDecision:
    allowed: bool
    action: str
    classification: Classification
    policies: tuple[str, ...] = ()
    reason: str = ""
    message: str = ""
    plans: tuple[StatementPlan, ...] = ()  # one per statement that returns rows, in order
    hold: pb.ApprovalRule | None = None  # allowed, but only once a person approves

    def client_message(self) -> str:
        """What the client sees when the statement is denied."""
        rule = ", ".join(self.policies) if self.policies else "no matching permit"
        text = self.message or self.reason
        return f"Lockgate denied this statement ({rule}): {text}"


class Enforcer:
    def __init__(
        self,
        view: BundleView,
        identity: str,
        connection: str,
        views: Mapping[str, str] | None = None,
    ) -> None:
        self.view = view
        # Definitions of the target's views ("schema.name" -> SELECT), for column lineage.
        self.views: dict[str, str] = dict(views or {})
        self.identity = identity
        self.connection = connection
        principal = view.principal(identity)
        self.rules: RulesInForce | None = rules_for(
            view.bundle.masking_rules, principal, connection
        )
        self._cache: dict[str, StatementDecision] = {}
        self._by_shape: dict[str, StatementDecision] = {}  # by fingerprint
        self._by_key: dict[str, StatementDecision] = {}  # by shape_key
        self._fresh_until = 0.0  # cached decisions hold until then
        # SQL-level PREPARE name AS ...: EXECUTE name is decided as the prepared statement.
        self.prepared: dict[str, Classification] = {}

    @property
    def masking(self) -> bool:
        """Whether results on this session may need masking (so they must be inspected)."""
        return self.rules is not None

    def decide(self, sql: str) -> StatementDecision:
        """The decision for `sql`: a lookup by text, then by shape (the text without its
        literals' values, then libpg_query's fingerprint), then a full decision.

        A shape (which ignores constants) is only trusted for plain reads:
        constants can change the decision of a write (`WHERE 1=1` vs `WHERE 1=2`) or of a
        function call (`set_config('role', ...)`), never the tables, columns or lineage of a
        read without side-effecting functions.
        """
        now = time.time()
        if now >= self._fresh_until:
            self._expire_cache(now)
        cached = self._cache.get(sql)
        if cached is not None:
            return cached
        # The same text but for its literals, without a parse (see lockgate.sql.shape).
        key = shape_key(sql)
        if key is not None:
            cached = self._by_key.get(key)
            if cached is not None:
                return cached
        try:
            fingerprint: str | None = pg_fingerprint(sql)
        except Exception:  # not parseable: the full path fails it closed
            fingerprint = None
        if fingerprint is not None:
            cached = self._by_shape.get(fingerprint)
            if cached is not None:
                self._remember(self._cache, sql, cached)
                if key is not None:
                    self._remember(self._by_key, key, cached)
                return cached
        decision = self._decide(sql)
        c = decision.classification
        if c.executes:
            return decision
        self._remember(self._cache, sql, decision)
        if fingerprint is not None and _shape_decides(c):
            self._remember(self._by_shape, fingerprint, decision)
            if key is not None:
                self._remember(self._by_key, key, decision)
        return decision

    @property
    def fresh_until(self) -> float:
        """When the decisions cached so far stop holding (seconds since the epoch)."""
        return self._fresh_until

    def reuse(self, decision: StatementDecision) -> str | None:
        """Whether `decision`, which `decide` just gave, may be given again without asking:
        "shape" for every text with the statement's shape key (what `decide` does for a
        plain read), "text" for the same text, None when the statement must come back here
        (denied, held, masked, or depending on earlier statements of the session)."""
        c = decision.classification
        if not decision.allowed or decision.hold is not None or decision.plans:
            return None
        if c.executes or c.prepared_name is not None:
            return None
        return "shape" if _shape_decides(c) else "text"

    def _expire_cache(self, now: float) -> None:
        """Forget cached decisions when time could change them: at the top of each UTC hour
        (`context.hour` windows) and at the next expiry of a grant to this identity."""
        self._cache.clear()
        self._by_shape.clear()
        self._by_key.clear()
        next_hour = (int(now) // 3600 + 1) * 3600
        expiries = [
            g.expires_at_ms / 1000
            for g in self.view.bundle.grants
            if g.identity == self.identity and g.expires_at_ms / 1000 > now
        ]
        self._fresh_until = min([next_hour, *expiries])

    @staticmethod
    def _remember(
        cache: dict[str, StatementDecision], key: str, decision: StatementDecision
    ) -> None:
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = decision

    def _decide(self, sql: str) -> StatementDecision:
        c = classify_cached(sql)
        kind = c.kind
        for name in c.executes:
            inner = self.prepared.get(name)
            # EXECUTE of something we never saw prepared could be anything: fail closed.
            kind = _worse(kind, inner.kind if inner else "admin")
        action = ACTION_OF_KIND.get(kind, "admin")
        context = cedar_context(c)
        context["kind"] = kind
        context["hour"] = datetime.now(UTC).hour
        decision = self.view.authorize(self.identity, action, self.connection, context)
        if not decision.allowed:
            return StatementDecision(
                False, action, c, decision.policies, decision.reason, decision.message
            )
        plans: tuple[StatementPlan, ...] = ()
        if self.rules is not None:
            copied = self._copies_masked_data(c)
            if copied:
                reason = (
                    f"this statement would copy masked column {copied} "
                    f"(masking rule {', '.join(self.rules.names)})"
                )
                return StatementDecision(False, action, c, tuple(self.rules.names), reason, reason)
            lineages = result_lineage(sql, self.views) if self.views else lineage_cached(sql)
            plans = tuple(plan_statement(lin, self.rules) for lin in lineages)
            blocked = next((p for p in plans if p.deny_reason), None)
            if blocked is not None:
                return StatementDecision(
                    False,
                    action,
                    c,
                    tuple(self.rules.names),
                    blocked.deny_reason,
                    blocked.deny_reason,
                )
        if c.prepared_name:
            self.prepared[c.prepared_name] = c
        hold = self._approval_rule(sql, action, c)
        return StatementDecision(True, action, c, decision.policies, plans=plans, hold=hold)

    def _approval_rule(self, sql: str, action: str, c: Classification) -> pb.ApprovalRule | None:
        """The first approval rule that holds this statement, if any."""
        text = " ".join(sql.lower().split())
        for rule in self.view.approval_rules:
            if action not in rule.actions and c.kind not in rule.actions:
                continue
            if not any(fnmatchcase(self.connection, g) for g in rule.connections):
                continue
            if rule.tables and not any(
                fnmatchcase(t, g) or fnmatchcase(t.split(".", 1)[-1], g)
                for t in c.tables
                for g in rule.tables
            ):
                continue
            if rule.commands and not any(fnmatchcase(text, g.lower()) for g in rule.commands):
                continue
            return rule
        return None

    def _copies_masked_data(self, c: Classification) -> str:
        """A masked column a write or DDL statement reads, if any ("" if none).

        INSERT ... SELECT, CREATE TABLE AS, SELECT INTO, UPDATE ... SET x = masked, CREATE VIEW:
        each would move masked values somewhere the masking rules do not follow. Plain
        INSERT ... VALUES only writes the column, and stays allowed.
        """
        assert self.rules is not None
        if c.kind not in ("write", "ddl") or not self.rules.patterns:
            return ""
        if c.statement_types == ("INSERT",) and not c.tables_read - c.tables_written:
            return ""
        for column in sorted(c.columns):
            source = column if column.count(".") == 2 else f"*.*.{column}"
            if column_masked(source, self.rules):
                return column
        return ""

    def learn_view(self, name: str, definition: str) -> None:
        """Remember a view so lineage follows it (the adapter reads them from the target)."""
        self.views[name] = definition


# Functions whose result does not depend on which table or setting a constant names.
SHAPE_SAFE_FUNCTIONS = frozenset(
    {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "abs",
        "round",
        "ceil",
        "floor",
        "lower",
        "upper",
        "length",
        "char_length",
        "trim",
        "btrim",
        "ltrim",
        "rtrim",
        "substr",
        "substring",
        "coalesce",
        "nullif",
        "greatest",
        "least",
        "now",
        "current_date",
        "date_trunc",
        "date_part",
        "extract",
        "to_char",
        "age",
        "concat",
        "replace",
        "position",
        "strpos",
        "left",
        "right",
        "random",
        "md5",
        "generate_series",
        "array_length",
        "unnest",
        "string_agg",
        "array_agg",
    }
)


def _shape_decides(c: Classification) -> bool:
    """Whether every statement with this one's fingerprint gets the same decision."""
    return (
        c.kind in ("read", "other")
        and not c.dangers
        and not c.error
        and c.prepared_name is None
        and c.functions <= SHAPE_SAFE_FUNCTIONS
    )


SEVERITY = {"other": 0, "read": 1, "write": 2, "ddl": 3, "admin": 4}


def _worse(a: str, b: str) -> str:
    return a if SEVERITY.get(a, 4) >= SEVERITY.get(b, 4) else b
