"""Column lineage of query results: which source columns feed each column a statement returns.

Each statement is parsed by libpg_query (pglast) and its raw parse tree walked with PostgreSQL's
scoping rules (FROM scopes, CTEs, outer references) but without a catalog, so a base table's
columns are unknown: where a name could belong to several relations, every candidate is kept.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pglast import ast, enums, parse_sql

DIRECT = "direct"
JSON = "json"
DERIVED = "derived"
NONE = "none"

STAR_NAME = "*"
UNNAMED = "?column?"
DEFAULT_SCHEMA = "public"

# Builtin functions whose result is JSON built from their arguments (the masker can walk it).
_JSON_FUNCTIONS = frozenset(
    {
        "row_to_json",
        "to_json",
        "to_jsonb",
        "array_to_json",
        "json_build_object",
        "jsonb_build_object",
        "json_build_array",
        "jsonb_build_array",
        "json_object",
        "jsonb_object",
        "json_agg",
        "jsonb_agg",
        "json_agg_strict",
        "jsonb_agg_strict",
        "json_object_agg",
        "jsonb_object_agg",
        "json_object_agg_strict",
        "jsonb_object_agg_strict",
        "json_object_agg_unique",
        "jsonb_object_agg_unique",
        "json_object_agg_unique_strict",
        "jsonb_object_agg_unique_strict",
        "json_strip_nulls",
        "jsonb_strip_nulls",
        "jsonb_pretty",
    }
)
_JSON_NODES: tuple[type[ast.Node], ...] = (
    ast.JsonObjectConstructor,
    ast.JsonArrayConstructor,
    ast.JsonArrayQueryConstructor,
    ast.JsonObjectAgg,
    ast.JsonArrayAgg,
    ast.JsonParseExpr,
    ast.JsonScalarExpr,
    ast.JsonSerializeExpr,
)

# Builtin set-returning functions allowed in FROM, with their output column names: None for a
# scalar result (named after the alias or the function), () when a column definition list names
# them, and "record" when the row type comes from an argument (names unknown, sources known).
# Any other function in FROM may read tables we cannot see, so the lineage is incomplete.
_RECORD = "record"
_FROM_FUNCTIONS: dict[str, tuple[str, ...] | str | None] = {
    "generate_series": None,
    "generate_subscripts": None,
    "unnest": None,
    "regexp_matches": None,
    "regexp_split_to_table": None,
    "string_to_table": None,
    "json_object_keys": None,
    "jsonb_object_keys": None,
    "jsonb_path_query": None,
    "json_array_elements": ("value",),
    "jsonb_array_elements": ("value",),
    "json_array_elements_text": ("value",),
    "jsonb_array_elements_text": ("value",),
    "json_each": ("key", "value"),
    "jsonb_each": ("key", "value"),
    "json_each_text": ("key", "value"),
    "jsonb_each_text": ("key", "value"),
    "json_to_record": (),
    "json_to_recordset": (),
    "jsonb_to_record": (),
    "jsonb_to_recordset": (),
    "json_populate_record": _RECORD,
    "json_populate_recordset": _RECORD,
    "jsonb_populate_record": _RECORD,
    "jsonb_populate_recordset": _RECORD,
}

# Expression parts that order or window a value without flowing into it.
_NOT_VALUE_ATTRS = frozenset({"agg_order", "over", "location", "typeName"})

_MAX_RECURSIVE_PASSES = 8


@dataclass(frozen=True, slots=True)
class OutputColumn:
    """One result column and the source columns ("schema.table.column") its value comes from.

    `how` is "direct" (the value is a source column's, maybe cast), "json" (JSON built from the
    sources), "derived" (computed otherwise) or "none" (no sources). A star entry (`star` set,
    name "*", sources "schema.table.*") stands for the run of columns `*` expands to over the
    base tables in `star`; its width is unknown here (RowDescription's table OIDs tell).
    """

    name: str
    sources: frozenset[str]
    how: str
    star: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Lineage:
    """The lineage of one statement's result set.

    Without star entries, `columns` line up one to one with the result's fields. `complete` is
    False when part of the statement could not be resolved: mask by content instead.
    """

    columns: tuple[OutputColumn, ...]
    complete: bool
    tables: frozenset[str]


def result_lineage(sql: str, views: Mapping[str, str] | None = None) -> list[Lineage | None]:
    """Lineage of each top-level statement's result; None where a statement returns no rows."""
    if "\x00" in sql:
        return [None]  # libpg_query would read only up to the NUL
    try:
        statements = parse_sql(sql)
    except Exception:
        return [None]
    view_sql = {_view_key(name): text for name, text in (views or {}).items()}
    parsed_views: dict[str, ast.Node | None] = {}
    out: list[Lineage | None] = []
    for raw in statements:
        analyzer = _Analyzer(view_sql, parsed_views)
        try:
            out.append(analyzer.statement(raw.stmt))
        except Exception:
            out.append(Lineage((), False, frozenset(analyzer.tables)))
    return out


@functools.lru_cache(maxsize=4096)
def _cached_lineage(sql: str) -> tuple[Lineage | None, ...]:
    return tuple(result_lineage(sql))


def lineage_cached(sql: str) -> list[Lineage | None]:
    """result_lineage(sql) without views, memoised on the SQL text (LRU, 4096 entries)."""
    return list(_cached_lineage(sql))


# --- values and relations -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Value:
    sources: frozenset[str]
    how: str


_NO_VALUE = _Value(frozenset(), NONE)


def _combine_how(hows: Sequence[str]) -> str:
    kinds = {h for h in hows if h != NONE}
    if not kinds:
        return NONE
    if len(kinds) == 1:
        return kinds.pop()
    return DERIVED


def _merge(values: Sequence[_Value]) -> _Value:
    """A value that is one of `values` (a union branch, an ambiguous column)."""
    sources = frozenset().union(*(v.sources for v in values))
    return _Value(sources, _combine_how([v.how for v in values]) if sources else NONE)


def _computed(values: Sequence[_Value], how: str = DERIVED) -> _Value:
    """A value computed from `values`."""
    sources = frozenset().union(*(v.sources for v in values))
    return _Value(sources, how if sources else NONE)


def _star_column(tables: frozenset[str]) -> OutputColumn:
    return OutputColumn(STAR_NAME, frozenset(f"{t}.*" for t in tables), DIRECT, tables)


def _merge_stars(columns: Sequence[OutputColumn]) -> list[OutputColumn]:
    out: list[OutputColumn] = []
    for column in columns:
        if column.star and out and out[-1].star:
            out[-1] = _star_column(out[-1].star | column.star)
        else:
            out.append(column)
    return out


def _lookup_columns(columns: Sequence[OutputColumn], name: str) -> tuple[_Value | None, bool]:
    """Find `name` among output columns: (value, definitely there) or (None, False)."""
    named = [_Value(c.sources, c.how) for c in columns if not c.star and c.name == name]
    if named:
        return _merge(named), True
    tables = frozenset().union(*(c.star for c in columns))
    if tables:
        return _Value(frozenset(f"{t}.{name}" for t in tables), DIRECT), False
    return None, False


@dataclass(slots=True)
class _Rel:
    """A relation visible in a FROM scope under `name`."""

    name: str
    qualname: str | None = None  # "schema.relation" when it came from a RangeVar
    table: str | None = None  # base table: every column name resolves to table.column
    columns: tuple[OutputColumn, ...] = ()
    names_known: bool = True  # False: a function or pending CTE whose column names are unknown
    fallback: frozenset[str] = frozenset()  # sources of every column when names are unknown

    def lookup(self, name: str) -> tuple[_Value | None, bool]:
        if self.table is not None:
            return _Value(frozenset({f"{self.table}.{name}"}), DIRECT), False
        value, definite = _lookup_columns(self.columns, name)
        if value is not None or self.names_known:
            return value, definite
        return _computed([_Value(self.fallback, DERIVED)]), False

    def expand(self) -> list[OutputColumn]:
        if self.table is not None:
            return [_star_column(frozenset({self.table}))]
        if self.names_known:
            return list(self.columns)
        value = _computed([_Value(self.fallback, DERIVED)])
        return [*self.columns, OutputColumn(self.name, value.sources, value.how)]

    def whole_row(self) -> _Value:
        if self.table is not None:
            return _Value(frozenset({f"{self.table}.*"}), DERIVED)
        parts = [_Value(c.sources, DERIVED) for c in self.columns]
        return _computed([*parts, _Value(self.fallback, DERIVED)])


@dataclass(slots=True)
class _Join:
    left: _Item
    right: _Item
    using: tuple[str, ...]
    natural: bool


_Item = _Rel | _Join


@dataclass(slots=True)
class _Env:
    """CTE names visible at one query level (chained to the enclosing levels)."""

    ctes: dict[str, _Rel] = field(default_factory=dict)
    parent: _Env | None = None

    def find(self, name: str) -> _Rel | None:
        env: _Env | None = self
        while env is not None:
            if name in env.ctes:
                return env.ctes[name]
            env = env.parent
        return None


@dataclass(slots=True)
class _Scope:
    """The FROM scope of one query level; `parent` is the level outer references resolve in."""

    rels: list[_Rel]
    items: list[_Item]
    parent: _Scope | None
    env: _Env

    def levels(self) -> Iterator[_Scope]:
        scope: _Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent


def _view_key(name: str) -> str:
    return name if "." in name else f"{DEFAULT_SCHEMA}.{name}"


def _strings(items: Sequence[object] | None) -> list[str]:
    return [i.sval for i in items or () if isinstance(i, ast.String) and i.sval is not None]


def _alias_names(alias: ast.Alias | None) -> list[str]:
    return _strings(alias.colnames) if alias is not None else []


# --- output names (PostgreSQL's FigureColname, parse_target.c) -------------------------------


def _figure(node: object) -> tuple[str, int]:
    """The column name PostgreSQL gives an unaliased target, with its strength (0 = none)."""
    if isinstance(node, ast.ColumnRef):
        names = _strings(node.fields)
        return (names[-1], 2) if names else (UNNAMED, 0)
    if isinstance(node, ast.A_Indirection):
        names = _strings(node.indirection)
        return (names[-1], 2) if names else _figure(node.arg)
    if isinstance(node, ast.FuncCall):
        names = _strings(node.funcname)
        return (names[-1], 2) if names else (UNNAMED, 0)
    if isinstance(node, ast.A_Expr):
        if node.kind == enums.A_Expr_Kind.AEXPR_NULLIF:
            return "nullif", 2
        return UNNAMED, 0
    if isinstance(node, ast.TypeCast):
        name, strength = _figure(node.arg)
        if strength <= 1 and node.typeName is not None:
            type_names = _strings(node.typeName.names)
            if type_names:
                return type_names[-1], 1
        return name, strength
    if isinstance(node, ast.CollateClause):
        return _figure(node.arg)
    if isinstance(node, ast.SubLink):
        if node.subLinkType == enums.SubLinkType.EXISTS_SUBLINK:
            return "exists", 2
        if node.subLinkType == enums.SubLinkType.ARRAY_SUBLINK:
            return "array", 2
        if node.subLinkType == enums.SubLinkType.EXPR_SUBLINK:
            return _first_target_name(node.subselect), 2
        return UNNAMED, 0
    if isinstance(node, ast.CaseExpr):
        name, strength = _figure(node.defresult)
        return ("case", 1) if strength <= 1 else (name, strength)
    if isinstance(node, ast.MinMaxExpr):
        return ("greatest" if node.op == enums.MinMaxOp.IS_GREATEST else "least"), 2
    if isinstance(node, ast.SQLValueFunction):
        return _sql_value_function_name(node), 2
    if isinstance(node, ast.XmlExpr):
        xml_op = node.op
        if xml_op is None or xml_op == enums.XmlExprOp.IS_DOCUMENT:
            return UNNAMED, 0
        return xml_op.name.removeprefix("IS_").lower(), 2
    if isinstance(node, ast.JsonFuncExpr):
        json_op = node.op
        if json_op is None:
            return UNNAMED, 0
        return json_op.name.removesuffix("_OP").lower(), 2
    for node_type, name in _FIXED_NAMES:
        if isinstance(node, node_type):
            return name, 2
    return UNNAMED, 0


_FIXED_NAMES: tuple[tuple[type[ast.Node], str], ...] = (
    (ast.GroupingFunc, "grouping"),
    (ast.MergeSupportFunc, "merge_action"),
    (ast.A_ArrayExpr, "array"),
    (ast.RowExpr, "row"),
    (ast.CoalesceExpr, "coalesce"),
    (ast.XmlSerialize, "xmlserialize"),
    (ast.JsonParseExpr, "json"),
    (ast.JsonScalarExpr, "json_scalar"),
    (ast.JsonSerializeExpr, "json_serialize"),
    (ast.JsonObjectConstructor, "json_object"),
    (ast.JsonArrayConstructor, "json_array"),
    (ast.JsonArrayQueryConstructor, "json_array"),
    (ast.JsonObjectAgg, "json_objectagg"),
    (ast.JsonArrayAgg, "json_arrayagg"),
)


def _sql_value_function_name(node: ast.SQLValueFunction) -> str:
    op = node.op
    if op is None:
        return UNNAMED
    return op.name.removeprefix("SVFOP_").removesuffix("_N").lower()


def _first_target_name(select: object) -> str:
    while isinstance(select, ast.SelectStmt) and select.op != enums.SetOperation.SETOP_NONE:
        select = select.larg
    if not isinstance(select, ast.SelectStmt):
        return UNNAMED
    if select.valuesLists:
        return "column1"
    targets = select.targetList or ()
    if not targets or not isinstance(targets[0], ast.ResTarget):
        return UNNAMED
    if targets[0].name:
        return str(targets[0].name)
    return _figure(targets[0].val)[0]


def _selects_into(select: ast.SelectStmt) -> bool:
    """SELECT ... INTO creates a table instead of returning rows (INTO sits on the first arm)."""
    node: object = select
    while isinstance(node, ast.SelectStmt):
        if node.intoClause is not None:
            return True
        node = node.larg
    return False


def _is_star_ref(node: object) -> bool:
    if not isinstance(node, ast.ColumnRef):
        return False
    fields = node.fields or ()
    return bool(fields) and isinstance(fields[-1], ast.A_Star)


def _children(node: ast.Node) -> Iterator[object]:
    for attr in node:
        if attr not in _NOT_VALUE_ATTRS:
            yield from _flatten(getattr(node, attr, None))


def _flatten(value: object) -> Iterator[object]:
    if isinstance(value, ast.Node):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _flatten(item)


# --- the analysis ----------------------------------------------------------------------------


class _Analyzer:
    """Walks one top-level statement; collects base tables and whether all of it resolved."""

    def __init__(self, views: Mapping[str, str], parsed_views: dict[str, ast.Node | None]) -> None:
        self.views = views
        self.parsed_views = parsed_views
        self.tables: set[str] = set()
        self.complete = True
        self.expanding: set[str] = set()

    def lineage(self, columns: Sequence[OutputColumn]) -> Lineage:
        return Lineage(tuple(columns), self.complete, frozenset(self.tables))

    def statement(self, node: object) -> Lineage | None:
        root = _Env()
        if isinstance(node, ast.SelectStmt):
            if _selects_into(node):
                return None
            return self.lineage(self.select(node, root, None))
        if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            columns = self.modify(node, root, None)
            return None if columns is None else self.lineage(columns)
        if isinstance(node, ast.CopyStmt):
            return self.copy(node, root)
        if isinstance(node, ast.FetchStmt):
            # the cursor's query was declared in another statement
            return None if node.ismove else Lineage((), False, frozenset())
        if isinstance(node, (ast.ExecuteStmt, ast.CallStmt)):
            # a prepared statement or a procedure's OUT parameters: rows of unknown origin
            return Lineage((), False, frozenset())
        return None

    def copy(self, node: ast.CopyStmt, env: _Env) -> Lineage | None:
        if node.is_from or node.is_program or node.filename is not None:
            return None  # no rows reach the client
        if node.query is not None:
            return self.lineage(self.query(node.query, env, None))
        if node.relation is None:
            return None
        rel = self.range_var(node.relation, env, allow_cte=False)
        names = _strings(node.attlist)
        if not names:
            return self.lineage(rel.expand())
        columns = []
        for name in names:
            value, _ = rel.lookup(name)
            if value is None:
                self.complete = False
                value = _NO_VALUE
            columns.append(OutputColumn(name, value.sources, value.how))
        return self.lineage(columns)

    # queries

    def query(self, node: object, env: _Env, parent: _Scope | None) -> list[OutputColumn]:
        if isinstance(node, ast.SelectStmt):
            return self.select(node, env, parent)
        if isinstance(node, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)):
            return self.modify(node, env, parent) or []
        self.complete = False
        return []

    def select(self, node: ast.SelectStmt, env: _Env, parent: _Scope | None) -> list[OutputColumn]:
        env = self.with_clause(node.withClause, env, parent)
        if node.op is not None and node.op != enums.SetOperation.SETOP_NONE:
            left = self.query(node.larg, env, parent)
            right = self.query(node.rarg, env, parent)
            return self.set_operation(left, right)
        if node.valuesLists:
            return self.values(node.valuesLists, _Scope([], [], parent, env))
        scope = self.from_clause(node.fromClause, env, parent)
        for clause in (node.whereClause, node.havingClause, node.groupClause, node.sortClause):
            self.touch(clause, scope)
        return self.targets(node.targetList, scope)

    def set_operation(
        self, left: list[OutputColumn], right: list[OutputColumn]
    ) -> list[OutputColumn]:
        same_shape = len(left) == len(right) and all(
            bool(a.star) == bool(b.star) for a, b in zip(left, right, strict=True)
        )
        if same_shape:
            return [
                OutputColumn(
                    a.name,
                    a.sources | b.sources,
                    _merge([_Value(a.sources, a.how), _Value(b.sources, b.how)]).how,
                    a.star | b.star,
                )
                for a, b in zip(left, right, strict=True)
            ]
        # stars of unknown width on one side: every column may carry any right-hand source
        self.complete = False
        rest = frozenset().union(*(c.sources for c in right))
        return [
            OutputColumn(c.name, c.sources | rest, DERIVED if c.sources | rest else NONE, c.star)
            for c in left
        ]

    def values(self, rows: Sequence[object], scope: _Scope) -> list[OutputColumn]:
        per_column: list[list[_Value]] = []
        for row in rows:
            items = row if isinstance(row, (tuple, list)) else ()
            for i, item in enumerate(items):
                if i == len(per_column):
                    per_column.append([])
                per_column[i].append(self.expr(item, scope))
        out = []
        for i, values in enumerate(per_column, start=1):
            value = _merge(values)
            out.append(OutputColumn(f"column{i}", value.sources, value.how))
        return out

    def modify(
        self,
        node: ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt | ast.MergeStmt,
        env: _Env,
        parent: _Scope | None,
    ) -> list[OutputColumn] | None:
        """INSERT/UPDATE/DELETE/MERGE: the RETURNING list, None without one."""
        env = self.with_clause(node.withClause, env, parent)
        if node.relation is None:
            self.complete = False
            return []
        target = self.range_var(node.relation, env, allow_cte=False)
        scope = _Scope([target], [target], parent, env)
        extra: Sequence[object] = ()
        if isinstance(node, ast.UpdateStmt):
            extra = node.fromClause or ()
        elif isinstance(node, ast.DeleteStmt):
            extra = node.usingClause or ()
        elif isinstance(node, ast.MergeStmt) and node.sourceRelation is not None:
            extra = (node.sourceRelation,)
        for item in extra:
            added, rels = self.from_item(item, scope)
            scope.items.append(added)
            scope.rels.extend(rels)
        if isinstance(node, ast.InsertStmt):
            self.side_query(node.selectStmt, env, parent)
        elif isinstance(node, ast.MergeStmt):
            self.touch((node.joinCondition, node.mergeWhenClauses), scope)
        else:
            self.touch(node.whereClause, scope)
        if isinstance(node, ast.UpdateStmt):
            self.touch(node.targetList, scope)
        returning = node.returningClause
        if returning is None:
            return None
        self.returning_aliases(returning, target, scope)
        return self.targets(returning.exprs, scope)

    def returning_aliases(
        self, returning: ast.ReturningClause, target: _Rel, scope: _Scope
    ) -> None:
        """PostgreSQL 18: RETURNING old.x / new.x (or their WITH (OLD AS o) aliases)."""
        names = {enums.ReturningOptionKind.RETURNING_OPTION_OLD: "old"}
        names[enums.ReturningOptionKind.RETURNING_OPTION_NEW] = "new"
        for option in returning.options or ():
            if isinstance(option, ast.ReturningOption) and option.option is not None:
                names[option.option] = str(option.value)
        taken = {rel.name for rel in scope.rels}
        for name in names.values():
            if name not in taken:
                scope.rels.append(replace(target, name=name))

    def with_clause(self, clause: ast.WithClause | None, env: _Env, parent: _Scope | None) -> _Env:
        if clause is None or not clause.ctes:
            return env
        ctes = [c for c in clause.ctes if isinstance(c, ast.CommonTableExpr) and c.ctename]
        inner = _Env({}, env)
        if not clause.recursive:
            for cte in ctes:
                inner.ctes[str(cte.ctename)] = self.cte(cte, inner, parent)
            return inner
        # WITH RECURSIVE: any CTE may read any other; iterate to a fixed point of the sources,
        # starting (as PostgreSQL does for the types) from the non-recursive term
        complete = self.complete
        for cte in ctes:
            names = _strings(cte.aliascolnames)
            pending = tuple(OutputColumn(n, frozenset(), NONE) for n in names)
            inner.ctes[str(cte.ctename)] = _Rel(
                str(cte.ctename), columns=pending, names_known=bool(names)
            )
        for cte in ctes:
            body = cte.ctequery
            if isinstance(body, ast.SelectStmt) and body.op == enums.SetOperation.SETOP_UNION:
                start = self.rename(
                    self.query(body.larg, inner, parent), _strings(cte.aliascolnames)
                )
                inner.ctes[str(cte.ctename)] = _Rel(str(cte.ctename), columns=tuple(start))
        for _ in range(_MAX_RECURSIVE_PASSES):
            self.complete = complete
            changed = False
            for cte in ctes:
                rel = self.cte(cte, inner, parent)
                if rel != inner.ctes[str(cte.ctename)]:
                    inner.ctes[str(cte.ctename)] = rel
                    changed = True
            if not changed:
                break
        else:
            self.complete = False
        return inner

    def cte(self, cte: ast.CommonTableExpr, env: _Env, parent: _Scope | None) -> _Rel:
        name = str(cte.ctename)
        columns = self.rename(self.query(cte.ctequery, env, parent), _strings(cte.aliascolnames))
        search = cte.search_clause
        if isinstance(search, ast.CTESearchClause) and search.search_seq_column:
            value = self.columns_value(columns, _strings(search.search_col_list))
            columns.append(OutputColumn(str(search.search_seq_column), value.sources, value.how))
        cycle = cte.cycle_clause
        if isinstance(cycle, ast.CTECycleClause):
            if cycle.cycle_mark_column:
                columns.append(OutputColumn(str(cycle.cycle_mark_column), frozenset(), NONE))
            if cycle.cycle_path_column:
                value = self.columns_value(columns, _strings(cycle.cycle_col_list))
                columns.append(OutputColumn(str(cycle.cycle_path_column), value.sources, value.how))
        return _Rel(name, columns=tuple(columns))

    @staticmethod
    def columns_value(columns: Sequence[OutputColumn], names: Sequence[str]) -> _Value:
        found = [_lookup_columns(columns, n)[0] for n in names]
        return _computed([v for v in found if v is not None])

    def rename(self, columns: list[OutputColumn], names: Sequence[str]) -> list[OutputColumn]:
        """Apply an alias column list (`AS s(a, b)`) to the leading columns."""
        if not names:
            return columns
        out: list[OutputColumn] = []
        for i, column in enumerate(columns):
            if i >= len(names):
                out.extend(columns[i:])
                return out
            if column.star:
                # the aliases land somewhere inside a star of unknown width
                self.complete = False
                rest = _merge([_Value(c.sources, c.how) for c in columns[i:]])
                out.extend(OutputColumn(n, rest.sources, rest.how) for n in names[i:])
                out.extend(columns[i:])
                return out
            out.append(replace(column, name=names[i]))
        if len(names) > len(columns):
            self.complete = False
        return out

    # FROM

    def from_clause(
        self, items: Sequence[object] | None, env: _Env, parent: _Scope | None
    ) -> _Scope:
        scope = _Scope([], [], parent, env)
        for item in items or ():
            added, rels = self.from_item(item, scope)
            scope.items.append(added)
            scope.rels.extend(rels)
        return scope

    def lateral(self, scope: _Scope, extra: Sequence[_Rel] = ()) -> _Scope:
        """The scope a LATERAL item (or a function in FROM) sees: the items to its left."""
        return _Scope([*scope.rels, *extra], [], scope.parent, scope.env)

    def from_item(
        self, node: object, scope: _Scope, left: Sequence[_Rel] = ()
    ) -> tuple[_Item, list[_Rel]]:
        if isinstance(node, ast.RangeVar):
            rel = self.range_var(node, scope.env, allow_cte=True)
            return rel, [rel]
        if isinstance(node, ast.RangeSubselect):
            parent = self.lateral(scope, left) if node.lateral else scope.parent
            columns = self.query(node.subquery, scope.env, parent)
            alias = node.alias
            columns = self.rename(columns, _alias_names(alias))
            name = str(alias.aliasname) if alias is not None and alias.aliasname else ""
            rel = _Rel(name, columns=tuple(columns))
            return rel, [rel]
        if isinstance(node, ast.JoinExpr):
            return self.join(node, scope, left)
        if isinstance(node, ast.RangeFunction):
            rel = self.range_function(node, self.lateral(scope, left))
            return rel, [rel]
        if isinstance(node, ast.RangeTableSample):
            return self.from_item(node.relation, scope, left)
        if isinstance(node, (ast.RangeTableFunc, ast.JsonTable)):
            rel = self.table_function(node, self.lateral(scope, left))
            return rel, [rel]
        self.complete = False
        rel = _Rel("", names_known=False)
        return rel, [rel]

    def join(
        self, node: ast.JoinExpr, scope: _Scope, left: Sequence[_Rel]
    ) -> tuple[_Item, list[_Rel]]:
        left_item, left_rels = self.from_item(node.larg, scope, left)
        right_item, right_rels = self.from_item(node.rarg, scope, [*left, *left_rels])
        using = tuple(_strings(node.usingClause))
        item = _Join(left_item, right_item, using, bool(node.isNatural))
        rels = [*left_rels, *right_rels]
        self.touch(node.quals, _Scope(rels, [], scope.parent, scope.env))
        if node.join_using_alias is not None and node.join_using_alias.aliasname:
            merged = self.expand_join(item)[: len(using)]
            rels.append(_Rel(str(node.join_using_alias.aliasname), columns=tuple(merged)))
        if node.alias is not None and node.alias.aliasname:
            columns = self.rename(self.expand_item(item), _alias_names(node.alias))
            rel = _Rel(str(node.alias.aliasname), columns=tuple(columns))
            return rel, [rel]
        return item, rels

    def range_var(self, node: ast.RangeVar, env: _Env, *, allow_cte: bool) -> _Rel:
        relname = str(node.relname or "")
        alias = node.alias
        name = str(alias.aliasname) if alias is not None and alias.aliasname else relname
        if allow_cte and not node.schemaname:
            cte = env.find(relname)
            if cte is not None:
                columns = self.rename(list(cte.columns), _alias_names(alias))
                return replace(cte, name=name, columns=tuple(columns))
        qualname = f"{node.schemaname or DEFAULT_SCHEMA}.{relname}"
        if qualname in self.views:
            expanded = self.view(qualname)
            if expanded is not None:
                columns = self.rename(expanded, _alias_names(alias))
                return _Rel(name, qualname=qualname, columns=tuple(columns))
        self.tables.add(qualname)
        renamed = _alias_names(alias)
        if renamed:
            # `users AS u(a, b)` renames the table's first columns, which we cannot name
            self.complete = False
            every = frozenset({f"{qualname}.*"})
            columns = [OutputColumn(n, every, DIRECT) for n in renamed]
            columns.append(_star_column(frozenset({qualname})))
            return _Rel(name, qualname=qualname, columns=tuple(columns))
        return _Rel(name, qualname=qualname, table=qualname)

    def view(self, qualname: str) -> list[OutputColumn] | None:
        """The output columns of a view, expanded from its definition; None to treat as table."""
        if qualname in self.expanding:
            self.complete = False
            return None
        if qualname not in self.parsed_views:
            try:
                statements = parse_sql(self.views[qualname])
            except Exception:
                statements = ()
            self.parsed_views[qualname] = statements[0].stmt if len(statements) == 1 else None
        definition = self.parsed_views[qualname]
        if definition is None:
            self.complete = False
            return None
        self.expanding.add(qualname)
        try:
            return self.query(definition, _Env(), None)
        finally:
            self.expanding.discard(qualname)

    def range_function(self, node: ast.RangeFunction, scope: _Scope) -> _Rel:
        alias = node.alias
        sources: list[_Value] = []
        names: list[str] = []
        names_known = True
        first_name = ""
        for pair in node.functions or ():
            call, coldefs = (pair[0], pair[1]) if isinstance(pair, tuple) else (pair, None)
            sources.append(self.expr(call, scope))
            funcname = _strings(call.funcname) if isinstance(call, ast.FuncCall) else []
            known = len(funcname) == 1 or (len(funcname) == 2 and funcname[0] == "pg_catalog")
            fname = funcname[-1] if funcname else ""
            first_name = first_name or fname
            shape = _FROM_FUNCTIONS.get(fname, _RECORD) if known else _RECORD
            if not known or fname not in _FROM_FUNCTIONS:
                self.complete = False  # a function of the database's own may read any table
            defs = (
                coldefs if coldefs else (node.coldeflist if len(node.functions or ()) == 1 else ())
            )
            def_names = [str(d.colname) for d in defs or () if isinstance(d, ast.ColumnDef)]
            if def_names:
                names.extend(def_names)
            elif shape is None:
                count = len(call.args or ()) if fname == "unnest" else 1
                base = str(alias.aliasname) if alias is not None and not node.is_rowsfrom else fname
                names.extend([base] * max(count, 1))
            elif isinstance(shape, tuple) and shape:
                names.extend(shape)
            else:
                names_known = False
        if node.ordinality:
            names.append("ordinality")
        value = _computed(sources)
        name = str(alias.aliasname) if alias is not None and alias.aliasname else first_name
        columns = [
            OutputColumn(
                n,
                frozenset() if n == "ordinality" else value.sources,
                NONE if n == "ordinality" else value.how,
            )
            for n in names
        ]
        aliases = _alias_names(alias)
        if not names_known:
            if aliases:
                columns = [OutputColumn(n, value.sources, value.how) for n in aliases]
                names_known = True
            return _Rel(
                name, columns=tuple(columns), names_known=names_known, fallback=value.sources
            )
        columns = self.rename(columns, aliases)
        return _Rel(name, columns=tuple(columns), fallback=value.sources)

    def table_function(self, node: ast.RangeTableFunc | ast.JsonTable, scope: _Scope) -> _Rel:
        """XMLTABLE / JSON_TABLE: every column is computed from the document."""
        value = _computed([self.expr(c, scope) for c in _children(node)])
        names: list[str] = []
        if isinstance(node, ast.RangeTableFunc):
            names = [
                str(c.colname) for c in node.columns or () if isinstance(c, ast.RangeTableFuncCol)
            ]
        else:
            pending = list(node.columns or ())
            while pending:
                column = pending.pop(0)
                if isinstance(column, ast.JsonTableColumn):
                    if column.name:
                        names.append(str(column.name))
                    pending[:0] = list(column.columns or ())
        alias = node.alias
        columns = [OutputColumn(n, value.sources, value.how) for n in names]
        columns = self.rename(columns, _alias_names(alias))
        name = str(alias.aliasname) if alias is not None and alias.aliasname else ""
        if isinstance(node, ast.JsonTable) and not name:
            name = "json_table"
        elif not name:
            name = "xmltable"
        return _Rel(name, columns=tuple(columns), fallback=value.sources)

    # star expansion

    def expand_item(self, item: _Item) -> list[OutputColumn]:
        if isinstance(item, _Rel):
            return item.expand()
        return self.expand_join(item)

    def expand_join(self, join: _Join) -> list[OutputColumn]:
        left = self.expand_item(join.left)
        right = self.expand_item(join.right)
        common: list[str] = list(join.using)
        if join.natural:
            if any(c.star for c in (*left, *right)):
                return left + right  # the common columns hide inside the stars
            right_names = {c.name for c in right}
            common = [c.name for c in left if c.name in right_names]
        if not common:
            return left + right
        merged = []
        for name in common:
            found = [_lookup_columns(left, name)[0], _lookup_columns(right, name)[0]]
            value = _merge([v for v in found if v is not None])
            merged.append(OutputColumn(name, value.sources, value.how))
        rest = [c for c in (*left, *right) if c.star or c.name not in common]
        return merged + rest

    # target lists

    def targets(self, targets: Sequence[object] | None, scope: _Scope) -> list[OutputColumn]:
        out: list[OutputColumn] = []
        for target in targets or ():
            if not isinstance(target, ast.ResTarget):
                self.complete = False
                continue
            if _is_star_ref(target.val) and isinstance(target.val, ast.ColumnRef):
                out.extend(_merge_stars(self.star(target.val, scope)))
                continue
            value = self.expr(target.val, scope)
            name = str(target.name) if target.name else _figure(target.val)[0]
            out.append(OutputColumn(name, value.sources, value.how))
        return out

    def star(self, ref: ast.ColumnRef, scope: _Scope) -> list[OutputColumn]:
        qualifier = _strings((ref.fields or ())[:-1])
        if not qualifier:
            if not scope.items:
                self.complete = False  # SELECT * without FROM is an error
            return [c for item in scope.items for c in self.expand_item(item)]
        rel = self.find_rel(qualifier, scope)
        if rel is None:
            self.complete = False
            return []
        return rel.expand()

    def find_rel(self, qualifier: Sequence[str], scope: _Scope) -> _Rel | None:
        """The relation `rel`, `schema.rel` or `db.schema.rel` names, innermost level first."""
        relname = qualifier[-1]
        schema = qualifier[-2] if len(qualifier) >= 2 else None
        for level in scope.levels():
            for rel in level.rels:
                if rel.name != relname:
                    continue
                if schema is None or rel.qualname == f"{schema}.{relname}":
                    return rel
        return None

    # expressions

    def touch(self, node: object, scope: _Scope) -> None:
        """Walk a clause that feeds no output value (WHERE, ON): only for the tables it reads."""
        complete = self.complete
        for part in _flatten(node):
            self.expr(part, scope)
        self.complete = complete

    def side_query(self, node: object, env: _Env, parent: _Scope | None) -> None:
        if node is None:
            return
        complete = self.complete
        self.query(node, env, parent)
        self.complete = complete

    def expr(self, node: object, scope: _Scope) -> _Value:
        if node is None or isinstance(
            node, (ast.A_Const, ast.ParamRef, ast.SQLValueFunction, ast.SetToDefault)
        ):
            return _NO_VALUE
        if isinstance(node, ast.ColumnRef):
            return self.column_ref(node, scope)
        if isinstance(node, (ast.TypeCast, ast.CollateClause)):
            return self.expr(node.arg, scope)  # a cast keeps the value what it was
        if isinstance(node, ast.A_Indirection):
            return self.indirection(node, scope)
        if isinstance(node, ast.SubLink):
            return self.sublink(node, scope)
        if isinstance(node, ast.SelectStmt):
            columns = self.query(node, scope.env, scope)
            return _computed([_Value(c.sources, DERIVED) for c in columns])
        if isinstance(node, ast.FuncCall):
            names = _strings(node.funcname)
            how = JSON if names and names[-1].lower() in _JSON_FUNCTIONS else DERIVED
            parts = [self.expr(a, scope) for a in node.args or ()]
            parts.append(self.expr(node.agg_filter, scope))
            if node.agg_within_group:
                # mode() / percentile_disc() WITHIN GROUP (ORDER BY x) return values of x
                parts.extend(self.expr(o, scope) for o in node.agg_order or ())
            return _computed(parts, how)
        if isinstance(node, ast.Node):
            how = JSON if isinstance(node, _JSON_NODES) else DERIVED
            return _computed([self.expr(c, scope) for c in _children(node)], how)
        return _NO_VALUE

    def sublink(self, node: ast.SubLink, scope: _Scope) -> _Value:
        columns = self.query(node.subselect, scope.env, scope)
        if node.subLinkType == enums.SubLinkType.EXISTS_SUBLINK:
            return _NO_VALUE  # a boolean about the rows, not their values
        parts = [_Value(c.sources, DERIVED) for c in columns]
        parts.append(self.expr(node.testexpr, scope))
        return _computed(parts)

    def indirection(self, node: ast.A_Indirection, scope: _Scope) -> _Value:
        fields = node.indirection or ()
        arg = node.arg
        if (
            len(fields) == 1
            and isinstance(fields[0], ast.String)
            and isinstance(arg, ast.ColumnRef)
        ):
            # (u).email or (u.*).email: a column of a row
            names = _strings(arg.fields)
            rel = self.find_rel(names, scope) if len(names) == 1 else None
            if rel is not None:
                value, _ = rel.lookup(str(fields[0].sval))
                if value is not None:
                    return value
        parts = [self.expr(arg, scope)]
        parts.extend(self.expr(f, scope) for f in fields)
        return _computed(parts)

    def column_ref(self, node: ast.ColumnRef, scope: _Scope) -> _Value:
        fields = node.fields or ()
        names = _strings(fields)
        if _is_star_ref(node):
            # `u.*` inside an expression is the whole row
            if not names:
                return _computed([rel.whole_row() for rel in scope.rels])
            rel = self.find_rel(names, scope)
            if rel is None:
                self.complete = False
                return _NO_VALUE
            return rel.whole_row()
        if len(names) != len(fields) or not names:
            self.complete = False
            return _NO_VALUE
        if len(names) == 1:
            value = self.resolve_name(names[0], scope, rows=True)
            if value is None:
                self.complete = False
                return _NO_VALUE
            return value
        rel = self.find_rel(names[:-1], scope)
        if rel is not None:
            value, _ = rel.lookup(names[-1])
            if value is None:
                self.complete = False
                return _NO_VALUE
            return value
        if len(names) == 2:
            # `a.b` where `a` is no relation: field b of a composite column a
            value = self.resolve_name(names[0], scope, rows=False)
            if value is not None:
                return _computed([value])
        self.complete = False
        schema = names[-3] if len(names) >= 3 else DEFAULT_SCHEMA
        return _Value(frozenset({f"{schema}.{names[-2]}.{names[-1]}"}), DIRECT)

    def resolve_name(self, name: str, scope: _Scope, *, rows: bool) -> _Value | None:
        """An unqualified name: a column of some relation in scope, or a whole-row reference.

        Base tables' columns are unknown, so every base table in the innermost level that could
        hold the name contributes; and since the name could still belong to an outer level
        (a correlated reference), outer candidates are added until a level definitely has it.
        """
        found: list[_Value] = []
        for level in scope.levels():
            definite: list[_Value] = []
            possible: list[_Value] = []
            for rel in level.rels:
                value, certain = rel.lookup(name)
                if value is not None:
                    (definite if certain else possible).append(value)
            if definite:
                return _merge(found + definite)
            row_rels = [rel for rel in level.rels if rel.name == name] if rows else []
            if row_rels:
                others = [
                    value
                    for rel in level.rels
                    if rel.name != name
                    for value in [rel.lookup(name)[0]]
                    if value is not None
                ]
                return _merge(found + others + [rel.whole_row() for rel in row_rels[:1]])
            found.extend(possible)
        return _merge(found) if found else None
