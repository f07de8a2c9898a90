"""Masking plans: which masking rules bind a session, and what to do with each result column.

Rules match result columns through their lineage (`lockgate.sql.lineage`): a column computed
from a masked source stays masked through aliases, casts, subqueries, CTEs, views and JSON
construction. Where lineage is unknown, names and content detectors still apply, and a rule may
ask for such statements to be denied instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from lockgate.policy import Principal
from lockgate.sql.lineage import Lineage, OutputColumn
from protos.lockgate.v1 import node_pb2 as pb

Pattern = tuple[str, str, str]  # schema, table, column globs (lower case)


@dataclass(frozen=True, slots=True)
class ColumnAction:
    how: str  # "column" | "derived" | "json" | "detect"
    keys: frozenset[str] = frozenset()


DETECT = ColumnAction("detect")


@dataclass(frozen=True, slots=True)
class RulesInForce:
    names: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    detectors: frozenset[str]
    deny_unresolved: bool


def parse_pattern(text: str) -> Pattern:
    """`email` / `users.email` / `public.users.*` -> (schema, table, column) globs."""
    parts = text.lower().split(".")
    while len(parts) < 3:
        parts.insert(0, "*")
    return parts[-3], parts[-2], parts[-1]


def _exempt(entries: Iterable[str], principal: Principal) -> bool:
    for entry in entries:
        kind, _, quoted = entry.partition("::")
        name = quoted.strip('"')
        if kind == "Identity" and name == principal.name:
            return True
        if kind == "Group" and name in principal.groups:
            return True
    return False


def rules_for(
    rules: Iterable[pb.MaskingRule], principal: Principal, connection: str
) -> RulesInForce | None:
    """The rules that mask results for `principal` on `connection`, merged; None if none do."""
    names: list[str] = []
    patterns: list[Pattern] = []
    detectors: set[str] = set()
    deny = False
    for rule in rules:
        if not any(fnmatchcase(connection, c) for c in rule.connections):
            continue
        if _exempt(rule.exempt, principal):
            continue
        names.append(rule.name)
        patterns.extend(parse_pattern(c) for c in rule.columns)
        detectors.update(rule.detectors)
        deny = deny or rule.unresolved == "deny"
    if not names:
        return None
    return RulesInForce(tuple(names), tuple(patterns), frozenset(detectors), deny)


def _matches(source: str, patterns: Sequence[Pattern]) -> set[str]:
    """Column globs of the patterns matching `schema.table.column` (or `schema.table.*`)."""
    schema, _, rest = source.partition(".")
    table, _, column = rest.partition(".")
    hits: set[str] = set()
    for ps, pt, pc in patterns:
        if not (fnmatchcase(schema, ps) and fnmatchcase(table, pt)):
            continue
        if column == "*" or fnmatchcase(column, pc):
            hits.add(pc)
    return hits


def column_masked(source: str, rules: RulesInForce) -> bool:
    """Whether `schema.table.column` (parts may be `*` when unknown) is masked by `rules`."""
    schema, table, column = parse_pattern(source)
    for ps, pt, pc in rules.patterns:
        if schema != "*" and not fnmatchcase(schema, ps):
            continue
        if table != "*" and not fnmatchcase(table, pt):
            continue
        if fnmatchcase(column, pc):
            return True
    return False


@dataclass(frozen=True, slots=True)
class StatementPlan:
    """What to do with the result of one statement, once its RowDescription is known."""

    rules: RulesInForce
    lineage: Lineage | None
    deny_reason: str = ""
    _by_names: dict[tuple[str, ...], tuple[ColumnAction | None, ...]] = field(
        default_factory=dict, compare=False
    )

    def actions(self, names: Sequence[str]) -> tuple[ColumnAction | None, ...]:
        """One action (or None: pass through) per result column, by position."""
        key = tuple(names)
        found = self._by_names.get(key)
        if found is None:
            found = tuple(self._action(c) for c in self._columns(names))
            self._by_names[key] = found
        return found

    def copy_actions(self, count: int) -> tuple[ColumnAction | None, ...]:
        """Actions for the `count` fields of COPY ... TO STDOUT rows (no column names)."""
        lin = self.lineage
        if lin is not None and not any(c.star for c in lin.columns) and len(lin.columns) == count:
            return tuple(self._action(c) for c in lin.columns)
        tables = lin.tables if lin is not None else frozenset()
        # Unknown column order: if any rule could match these tables, mask every field.
        masked = any(_matches(f"{t}.*", self.rules.patterns) for t in tables) or lin is None
        action = ColumnAction("column") if masked and self.rules.patterns else self._detect()
        return (action,) * count

    def _detect(self) -> ColumnAction | None:
        return DETECT if self.rules.detectors else None

    def _columns(self, names: Sequence[str]) -> list[OutputColumn | None]:
        """Line the lineage's entries up with the RowDescription's columns, expanding stars."""
        lin = self.lineage
        if lin is None:
            return [None] * len(names)
        entries = list(lin.columns)
        stars = [i for i, c in enumerate(entries) if c.star]
        if not stars:
            if len(entries) != len(names):
                return [None] * len(names)
            return list(entries)
        first, last = stars[0], stars[-1]
        head, tail = entries[:first], entries[last + 1 :]
        middle = len(names) - len(head) - len(tail)
        if middle < 0:
            return [None] * len(names)
        tables: set[str] = set()
        for c in entries[first : last + 1]:
            tables.update(c.star)
            tables.update(s.rsplit(".", 1)[0] for s in c.sources if not c.star)
        expanded = [
            OutputColumn(
                name=n,
                sources=frozenset(f"{t}.{n.lower()}" for t in tables),
                how="direct",
            )
            for n in names[len(head) : len(head) + middle]
        ]
        return [*head, *expanded, *tail]

    def _action(self, column: OutputColumn | None) -> ColumnAction | None:
        patterns = self.rules.patterns
        if column is None:
            return self._detect()
        hits: set[str] = set()
        whole_row = False
        for source in column.sources:
            found = _matches(source, patterns)
            if found and source.endswith(".*"):
                whole_row = True
            hits |= found
        if not hits:
            return self._detect()
        if column.how == "json":
            # Keys follow column names only when whole rows are turned into JSON
            # (row_to_json, to_jsonb(t), json_agg(t)); json_build_object('x', email) names its
            # own keys, so its value is masked whole.
            if (
                "*" in hits
                or not whole_row
                or any(_matches(s, patterns) for s in column.sources if not s.endswith(".*"))
            ):
                return ColumnAction("derived")
            return ColumnAction("json", frozenset(hits))
        if column.how == "direct" and not whole_row:
            return ColumnAction("column")
        return ColumnAction("derived")


def plan_statement(lineage: Lineage | None, rules: RulesInForce) -> StatementPlan:
    """The plan for one statement's result; asks for denial when lineage is unresolved and a
    rule in force says so."""
    if lineage is not None and not lineage.complete and rules.deny_unresolved:
        return StatementPlan(
            rules,
            lineage,
            deny_reason="the result's column lineage cannot be established and masking rule "
            f"{', '.join(rules.names)} denies such statements",
        )
    return StatementPlan(rules, lineage)
