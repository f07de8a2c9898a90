"""Statement classification: what a SQL string does, decided from PostgreSQL's own grammar.

`classify` parses with libpg_query (pglast, JSON output: the fastest route into Python) and walks
the whole raw parse tree once, collecting tables, columns, functions and dangers per statement.
It fails closed: a parse error, or a statement type it does not know, classifies as "admin".
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pglast.parser import ParseError, parse_plpgsql_json, parse_sql_json

__all__ = ["KINDS", "Classification", "bench", "cedar_context", "classify", "classify_cached"]

# Kinds in order of severity; a multi-statement string takes the most severe.
KINDS = ("other", "read", "write", "ddl", "admin")
_OTHER, _READ, _WRITE, _DDL, _ADMIN = range(5)

_Node = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Classification:
    """What a SQL string does, as the policy engine sees it."""

    kind: str
    statement_types: tuple[str, ...] = ()
    tables: frozenset[str] = frozenset()
    tables_read: frozenset[str] = frozenset()
    tables_written: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    unfiltered_write: bool = False
    multi_statement: bool = False
    data_modifying_cte: bool = False
    functions: frozenset[str] = frozenset()
    dangers: frozenset[str] = frozenset()
    prepared_name: str | None = None
    executes: tuple[str, ...] = ()
    error: str | None = None


def classify(sql: str) -> Classification:
    """Classify every statement in `sql`; never raises, unknown or unparseable input is admin."""
    if "\x00" in sql:
        # libpg_query reads a C string: everything after a NUL would go unseen.
        return Classification(kind="admin", error="statement contains a NUL byte")
    try:
        tree = json.loads(parse_sql_json(sql))
    except ParseError as exc:
        return Classification(kind="admin", error=str(exc))
    except Exception as exc:  # encoding errors and the like: fail closed
        return Classification(kind="admin", error=f"cannot parse statement: {exc}")
    try:
        return _classify_tree(sql, tree["stmts"])
    except Exception as exc:  # a tree shape this walker did not expect: fail closed
        return Classification(kind="admin", error=f"cannot classify statement: {exc!r}")


@functools.lru_cache(maxsize=4096)
def classify_cached(sql: str) -> Classification:
    """`classify` behind an LRU cache (the result is immutable, so sharing it is safe)."""
    return classify(sql)


def cedar_context(c: Classification) -> dict[str, object]:
    """The Cedar context record for a classification; every key is always present."""
    return {
        "kind": c.kind,
        "tables": sorted(c.tables),
        "columns": sorted(c.columns),
        "unfiltered_write": c.unfiltered_write,
        "multi_statement": c.multi_statement,
        "functions": sorted(c.functions),
        "statement_types": list(c.statement_types),
        "dangers": sorted(c.dangers),
        "data_modifying_cte": c.data_modifying_cte,
        "tables_written": sorted(c.tables_written),
    }


def bench(n: int = 20000) -> float:
    """Classify `n` distinct simple SELECTs and return statements per second (no cache)."""
    stmts = [f"SELECT id, email FROM users WHERE id = {i}" for i in range(n)]
    start = time.perf_counter()
    for s in stmts:
        classify(s)
    return n / (time.perf_counter() - start)


def _classify_tree(sql: str, stmts: list[_Node]) -> Classification:
    walker = _Walker()
    kind = _OTHER
    tags: list[str] = []
    encoded: bytes | None = None
    for raw in stmts:
        ((name, body),) = raw["stmt"].items()
        if name == "CreateFunctionStmt":
            # Statement positions are byte offsets into the UTF-8 text.
            encoded = sql.encode() if encoded is None else encoded
            start = raw.get("stmt_location", 0)
            end = start + raw["stmt_len"] if raw.get("stmt_len") else len(encoded)
            walker.source = encoded[start:end].decode(errors="replace")
        else:
            walker.source = ""
        walker.esc = _OTHER
        tag, stmt_kind = walker.stmt(name, body, _Scope(None))
        tags.append(tag)
        kind = max(kind, stmt_kind, walker.esc)
    read, written = walker.read, walker.written
    return Classification(
        kind=KINDS[kind],
        statement_types=tuple(tags),
        tables=frozenset(read | written),
        tables_read=frozenset(read),
        tables_written=frozenset(written),
        columns=frozenset(walker.columns),
        unfiltered_write=walker.unfiltered,
        multi_statement=len(stmts) > 1,
        data_modifying_cte=walker.dm_cte,
        functions=frozenset(walker.functions),
        dangers=frozenset(walker.dangers),
        prepared_name=walker.prepared,
        executes=tuple(walker.executes),
    )


# --- names and scopes ----------------------------------------------------------------------


class _Scope:
    """One FROM-level name scope: alias -> table ("public.users"), or None for a subquery/CTE."""

    __slots__ = ("ctes", "parent", "rels")

    def __init__(self, parent: _Scope | None) -> None:
        self.parent = parent
        self.rels: dict[str, str | None] = {}
        self.ctes: set[str] | None = None

    def lookup(self, alias: str) -> tuple[bool, str | None]:
        s: _Scope | None = self
        while s is not None:
            if alias in s.rels:
                return True, s.rels[alias]
            s = s.parent
        return False, None

    def is_cte(self, name: str) -> bool:
        s: _Scope | None = self
        while s is not None:
            if s.ctes is not None and name in s.ctes:
                return True
            s = s.parent
        return False

    def nearest(self) -> dict[str, str | None] | None:
        s: _Scope | None = self
        while s is not None:
            if s.rels:
                return s.rels
            s = s.parent
        return None


def _sval(node: _Node) -> str:
    return str(node["String"].get("sval", ""))


def _names(items: Iterable[_Node]) -> list[str]:
    return [_sval(i).lower() for i in items if "String" in i]


def _qualified(parts: list[str], default_schema: str) -> str:
    """`users` -> `public.users`; a catalog prefix is dropped (it must be the current database)."""
    if len(parts) >= 2:
        return f"{parts[-2]}.{parts[-1]}"
    name = parts[-1]
    # pg_catalog is searched before anything else, so an unqualified pg_* name is a catalog one.
    return f"pg_catalog.{name}" if name.startswith("pg_") else f"{default_schema}.{name}"


def _const_str(node: Any) -> str | None:
    """The value of a string literal, possibly cast (`'users'::regclass`), else None."""
    if type(node) is not dict:
        return None
    if "TypeCast" in node:
        return _const_str(node["TypeCast"].get("arg"))
    const = node.get("A_Const")
    if const is not None and "sval" in const:
        return str(const["sval"].get("sval", ""))
    return None


def _regclass_parts(text: str) -> list[str]:
    return [p.strip().strip('"').lower() for p in text.split(".") if p.strip()]


def _obj_word(objtype: str) -> str:
    word = _OBJ_WORDS.get(objtype)
    if word is None:
        word = objtype.removeprefix("OBJECT_").replace("_", " ")
    return word


# --- the walker ----------------------------------------------------------------------------


class _Walker:
    """Accumulates what every statement in one string touches; `esc` is the escalated kind."""

    __slots__ = (
        "colrefs",
        "columns",
        "dangers",
        "depth",
        "dm_cte",
        "esc",
        "executes",
        "executing",
        "functions",
        "prepared",
        "read",
        "schema",
        "source",
        "unfiltered",
        "written",
    )

    def __init__(self) -> None:
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.columns: set[str] = set()
        self.functions: set[str] = set()
        self.dangers: set[str] = set()
        self.executes: list[str] = []
        self.prepared: str | None = None
        self.unfiltered = False
        self.dm_cte = False
        self.esc = _OTHER
        # False under plain EXPLAIN: the statement is planned, not run, so it writes nothing.
        self.executing = True
        self.colrefs = 0
        self.depth = 0  # nesting of SQL found inside strings (function bodies, query_to_xml)
        self.schema = "public"
        self.source = ""  # text of the top-level statement being walked

    # generic traversal

    def walk(self, obj: Any, scope: _Scope) -> None:
        if type(obj) is dict:
            self.node(obj, scope)
        elif type(obj) is list:
            for item in obj:
                if type(item) is dict:
                    self.node(item, scope)
                elif type(item) is list:
                    self.walk(item, scope)

    def node(self, d: _Node, scope: _Scope) -> None:
        if len(d) == 1:
            ((key, val),) = d.items()
            if key[0].isupper() and type(val) is dict:
                if key in _LEAVES:
                    return
                handler = _NODE_HANDLERS.get(key)
                if handler is not None:
                    handler(self, val, scope)
                    return
                if key in _STMT_HANDLERS or key in _SIMPLE or key.endswith("Stmt"):
                    self.nested(key, val, scope)
                    return
                d = val
        if "relname" in d:  # a RangeVar held inline by a typed field
            self.rangevar(d, scope)
            return
        for val in d.values():
            if type(val) is dict or type(val) is list:
                self.walk(val, scope)

    def fields(self, body: _Node, scope: _Scope, skip: frozenset[str] = frozenset()) -> None:
        for key, val in body.items():
            if (type(val) is dict or type(val) is list) and key not in skip:
                self.walk(val, scope)

    def escalate(self, kind: int) -> None:
        if kind > self.esc:
            self.esc = kind

    def nested(self, name: str, body: _Node, scope: _Scope) -> None:
        _tag, kind = self.stmt(name, body, scope)
        if self.executing:
            self.escalate(kind)

    def stmt(self, name: str, body: _Node, scope: _Scope) -> tuple[str, int]:
        handler = _STMT_HANDLERS.get(name)
        if handler is not None:
            return handler(self, body, scope)
        spec = _SIMPLE.get(name)
        if spec is None:  # fail closed: a statement type nobody reviewed
            self.fields(body, scope)
            return _unknown_tag(name), _ADMIN
        tag, kind, dangers, targets = spec
        self.dangers.update(dangers)
        inner = scope
        for key in targets:
            val = body.get(key)
            if type(val) is dict:
                table, alias = self.target(val)
                inner = _Scope(scope)
                inner.rels[alias] = table
            elif type(val) is list:
                for item in val:
                    rv = item.get("RangeVar")
                    if rv is not None:
                        self.target(rv)
        self.fields(body, inner, targets)
        return tag, kind

    # relations

    def relname(self, rv: _Node, scope: _Scope | None) -> str | None:
        rel = str(rv.get("relname", "")).lower()
        schema = rv.get("schemaname")
        if schema:
            return f"{str(schema).lower()}.{rel}"
        if scope is not None and scope.is_cte(rel):
            return None
        if rv.get("relpersistence") == "t":
            return f"pg_temp.{rel}"
        return _qualified([rel], self.schema)

    def rangevar(self, rv: _Node, scope: _Scope) -> None:
        table = self.relname(rv, scope)
        if table is not None:
            self.read.add(table)

    def write(self, table: str) -> None:
        (self.written if self.executing else self.read).add(table)

    def target(self, rv: _Node) -> tuple[str, str]:
        """A relation a statement modifies (CTE names never shadow a target)."""
        table = self.relname(rv, None)
        assert table is not None
        self.write(table)
        alias = rv.get("alias")
        key = alias["aliasname"].lower() if alias else str(rv.get("relname", "")).lower()
        return table, key

    def from_items(self, items: list[_Node], scope: _Scope) -> None:
        for item in items:
            self.from_item(item, scope)

    def from_item(self, item: _Node, scope: _Scope) -> None:
        ((key, val),) = item.items()
        if key == "RangeVar":
            table = self.relname(val, scope)
            if table is not None:
                self.read.add(table)
            alias = val.get("alias")
            name = alias["aliasname"] if alias else val.get("relname", "")
            scope.rels[str(name).lower()] = table
            return
        if key == "JoinExpr":
            self.from_item(val["larg"], scope)
            self.from_item(val["rarg"], scope)
            quals = val.get("quals")
            if quals is not None:
                self.walk(quals, scope)
        elif key == "RangeTableSample":
            self.from_item(val["relation"], scope)
            self.fields(val, scope, _SKIP_RELATION)
        else:  # RangeSubselect, RangeFunction, RangeTableFunc, JsonTable
            self.fields(val, scope, _SKIP_ALIAS)
        alias = val.get("alias")
        if alias:
            scope.rels[str(alias["aliasname"]).lower()] = None

    def with_clause(self, body: _Node, scope: _Scope) -> _Scope:
        wc = body.get("withClause")
        if wc is None:
            return scope
        inner = _Scope(scope)
        names: set[str] = set()
        inner.ctes = names
        ctes = wc.get("ctes", [])
        if wc.get("recursive"):
            names.update(c["CommonTableExpr"]["ctename"].lower() for c in ctes)
        for c in ctes:
            cte = c["CommonTableExpr"]
            query = cte["ctequery"]
            if not query.keys().isdisjoint(_DML):
                self.dm_cte = True
            self.walk(query, inner)
            names.add(cte["ctename"].lower())
        return inner

    # expressions

    def column_ref(self, body: _Node, scope: _Scope) -> None:
        self.colrefs += 1
        fields = body["fields"]
        last = fields[-1]
        if "A_Star" in last:
            if len(fields) == 1:
                rels = scope.nearest()
                if rels:
                    self.columns.update(f"{t}.*" for t in rels.values() if t)
            else:
                table = self.qualifier(_names(fields[:-1]), scope)
                if table:
                    self.columns.add(f"{table}.*")
            return
        col = _sval(last).lower()
        if len(fields) == 1:
            rels = scope.nearest()
            table = None
            if rels is not None:
                # Resolvable when every name in scope is the same table (a self-join, EXCLUDED).
                tables = set(rels.values())
                if len(tables) == 1:
                    table = tables.pop()
            self.columns.add(f"{table}.{col}" if table else col)
            # A bare table alias is a whole-row reference: every column of the row.
            found, whole = scope.lookup(col)
            if found and whole:
                self.columns.add(f"{whole}.*")
            return
        table = self.qualifier(_names(fields[:-1]), scope)
        self.columns.add(f"{table}.{col}" if table else col)

    def qualifier(self, parts: list[str], scope: _Scope) -> str | None:
        if len(parts) == 1:
            return scope.lookup(parts[0])[1]
        return f"{parts[-2]}.{parts[-1]}"

    def indirection(self, body: _Node, scope: _Scope) -> None:
        # (u).email: one column of a whole-row reference, not the whole row.
        arg = body.get("arg", {})
        ref = arg.get("ColumnRef")
        ind = body.get("indirection") or [{}]
        if ref is not None and len(ref["fields"]) == 1 and "String" in ref["fields"][0]:
            found, table = scope.lookup(_sval(ref["fields"][0]).lower())
            if found and table and "String" in ind[0]:
                self.colrefs += 1
                self.columns.add(f"{table}.{_sval(ind[0]).lower()}")
                self.walk(ind[1:], scope)
                return
        self.fields(body, scope)

    def func_call(self, body: _Node, scope: _Scope) -> None:
        parts = _names(body.get("funcname", []))
        if parts:
            base = parts[-1]
            if len(parts) > 1 and not (
                parts[0] == "pg_catalog" and body.get("funcformat") == "COERCE_SQL_SYNTAX"
            ):
                self.functions.add(".".join(parts))
            else:
                self.functions.add(base)
            if base in _SPECIAL_FUNCTIONS or base.startswith(("lo_", "dblink")):
                self.function_effects(base, body.get("args") or [], scope)
        self.fields(body, scope, _SKIP_FUNCNAME)

    def function_effects(self, base: str, args: list[_Node], scope: _Scope) -> None:
        dangers = set(_FUNCTION_DANGERS.get(base, ()))
        if base.startswith("lo_") or base in ("loread", "lowrite"):
            dangers.add("large_object")
        if base.startswith("dblink"):
            dangers.add("dblink")
        if base == "set_config":
            setting = _const_str(args[0]) if args else None
            if setting is None or setting.lower() in _ROLE_SETTINGS:
                dangers.add("role_change")
        elif base in ("nextval", "setval"):
            if self.executing:
                self.escalate(_WRITE)
            seq = _const_str(args[0]) if args else None
            if seq:
                parts = _regclass_parts(seq)
                if parts:
                    self.write(_qualified(parts, self.schema))
        elif base in _SQL_TEXT_FUNCTIONS:
            index = _SQL_TEXT_FUNCTIONS[base]
            if base != "ts_rewrite" or len(args) == 2:
                text = _const_str(args[index]) if len(args) > index else None
                if text is None or not self.embedded_sql(text, 0):
                    dangers.add("dynamic_sql")
        elif base in _TABLE_TEXT_FUNCTIONS:
            name = _const_str(args[0]) if args else None
            parts = _regclass_parts(name) if name else []
            if parts:
                table = _qualified(parts, self.schema)
                self.read.add(table)
                self.columns.add(f"{table}.*")
            else:
                dangers.add("dynamic_sql")
        if dangers:
            self.dangers.update(dangers)
            self.esc = _ADMIN

    # SQL inside strings: function bodies, DO blocks, query_to_xml arguments

    def embedded_sql(self, text: str, mode: int) -> bool:
        """Walk SQL found in a string; False when it cannot be parsed (the caller fails closed)."""
        if mode in _PLPGSQL_ASSIGN_MODES:
            at = text.find(":=")
            text = "SELECT " + (text[at + 2 :] if at >= 0 else text[text.find("=") + 1 :])
        elif mode == _PLPGSQL_EXPR_MODE:
            text = "SELECT " + text
        elif mode != 0:
            return True
        if self.depth >= _MAX_DEPTH or "\x00" in text:
            self.esc = _ADMIN
            return False
        try:
            stmts = json.loads(parse_sql_json(text))["stmts"]
        except Exception:
            return False
        self.depth += 1
        try:
            for raw in stmts:
                ((name, body),) = raw["stmt"].items()
                self.nested(name, body, _Scope(None))
        finally:
            self.depth -= 1
        return True

    def plpgsql(self, source: str) -> bool:
        """Walk the SQL statements and expressions of a PL/pgSQL function (best effort)."""
        if self.depth >= _MAX_DEPTH:
            return False
        try:
            tree = json.loads(parse_plpgsql_json(source))
        except Exception:
            return False
        stack: list[Any] = [tree]
        while stack:
            obj = stack.pop()
            if type(obj) is list:
                stack.extend(obj)
            elif type(obj) is dict:
                expr = obj.get("PLpgSQL_expr")
                if expr is not None:
                    self.embedded_sql(str(expr.get("query", "")), int(expr.get("parseMode", 0)))
                    continue
                dyn = obj.get("PLpgSQL_stmt_dynexecute")
                if dyn is not None:
                    query = dyn.get("query", {}).get("PLpgSQL_expr", {}).get("query", "")
                    self.dynamic_execute(str(query))
                stack.extend(obj.values())
        return True

    def dynamic_execute(self, expr: str) -> None:
        try:
            stmts = json.loads(parse_sql_json("SELECT " + expr))["stmts"]
            value = stmts[0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
        except Exception:
            value = None
        text = _const_str(value)
        if text is None or not self.embedded_sql(text, 0):
            self.dangers.add("dynamic_sql")
            self.esc = _ADMIN

    # filters

    def check_filter(self, where: Any, colrefs_before: int) -> None:
        """Mark the statement unfiltered unless its WHERE can actually narrow the rows."""
        if not self.executing:
            return
        if _unfiltered(where, self.colrefs == colrefs_before):
            self.unfiltered = True


def _unfiltered(where: Any, no_columns: bool) -> bool:
    if where is None:
        return True
    if "CurrentOfExpr" in where:
        return False
    value = _fold(where)
    if value is True:
        return True
    # A condition that names no column and does not fold to false/NULL is the same for every
    # row: it selects all rows or none.
    return no_columns and value is _UNKNOWN


# --- statement handlers --------------------------------------------------------------------

_StmtHandler = Callable[[_Walker, _Node, _Scope], tuple[str, int]]


def _select_body(w: _Walker, b: _Node, scope: _Scope) -> None:
    scope = w.with_clause(b, scope)
    if b.get("op", "SETOP_NONE") != "SETOP_NONE":
        _select_body(w, b["larg"], scope)
        _select_body(w, b["rarg"], scope)
        inner = _Scope(scope)
        inner.rels[""] = None  # ORDER BY of a set operation names output columns, not tables
    else:
        inner = _Scope(scope)
        from_clause = b.get("fromClause")
        if from_clause is not None:
            w.from_items(from_clause, inner)
    w.fields(b, inner, _SELECT_SKIP)
    into = b.get("intoClause")
    if into is not None:
        w.target(into["rel"])
        if w.executing:
            w.escalate(_WRITE)


def _select(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    _select_body(w, b, scope)
    if "intoClause" in b:
        return "SELECT INTO", _WRITE
    return "SELECT", _READ


def _set_list(w: _Walker, targets: list[_Node], table: str, scope: _Scope) -> None:
    """SET a = ..., INSERT (a, b): each name is a column of the target table."""
    for item in targets:
        rt = item.get("ResTarget")
        if rt is None:
            w.walk(item, scope)
            continue
        name = rt.get("name")
        if name:
            w.columns.add(f"{table}.{str(name).lower()}")
        w.fields(rt, scope, _SKIP_NAME)


def _returning(w: _Walker, b: _Node, scope: _Scope) -> None:
    ret = b.get("returningClause") or b.get("returningList")
    if ret is not None:
        w.walk(ret, scope)


def _insert(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    scope = w.with_clause(b, scope)
    table, alias = w.target(b["relation"])
    cols = b.get("cols")
    if cols:
        _set_list(w, cols, table, scope)
    elif "selectStmt" in b:
        w.columns.add(f"{table}.*")
    select = b.get("selectStmt")
    if select is not None:
        w.walk(select, scope)
    ts = _Scope(scope)
    ts.rels[alias] = table
    conflict = b.get("onConflictClause")
    if conflict is not None:
        ts.rels["excluded"] = table
        _set_list(w, conflict.get("targetList", []), table, ts)
        w.fields(conflict, ts, _SKIP_TARGETLIST)
    _returning(w, b, ts)
    return "INSERT", _WRITE


def _update(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    scope = w.with_clause(b, scope)
    table, alias = w.target(b["relation"])
    us = _Scope(scope)
    us.rels[alias] = table
    from_clause = b.get("fromClause")
    if from_clause:
        w.from_items(from_clause, us)
    _set_list(w, b.get("targetList", []), table, us)
    before = w.colrefs
    where = b.get("whereClause")
    if where is not None:
        w.walk(where, us)
    w.check_filter(where, before)
    _returning(w, b, us)
    return "UPDATE", _WRITE


def _delete(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    scope = w.with_clause(b, scope)
    table, alias = w.target(b["relation"])
    ds = _Scope(scope)
    ds.rels[alias] = table
    using = b.get("usingClause")
    if using:
        w.from_items(using, ds)
    before = w.colrefs
    where = b.get("whereClause")
    if where is not None:
        w.walk(where, ds)
    w.check_filter(where, before)
    _returning(w, b, ds)
    return "DELETE", _WRITE


def _merge(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    scope = w.with_clause(b, scope)
    table, alias = w.target(b["relation"])
    ms = _Scope(scope)
    ms.rels[alias] = table
    w.from_item(b["sourceRelation"], ms)
    before = w.colrefs
    join = b.get("joinCondition")
    w.walk(join, ms)
    join_all = _unfiltered(join, w.colrefs == before)
    for item in b.get("mergeWhenClauses", []):
        clause = item["MergeWhenClause"]
        before = w.colrefs
        cond = clause.get("condition")
        if cond is not None:
            w.walk(cond, ms)
        _set_list(w, clause.get("targetList", []), table, ms)
        w.walk(clause.get("values"), ms)
        if clause.get("commandType") in ("CMD_UPDATE", "CMD_DELETE") and w.executing:
            match = clause.get("matchKind", "MERGE_WHEN_MATCHED")
            cond_all = cond is None or _unfiltered(cond, w.colrefs == before)
            # NOT MATCHED BY SOURCE touches every target row the source lacks.
            if cond_all and (join_all or match == "MERGE_WHEN_NOT_MATCHED_BY_SOURCE"):
                w.unfiltered = True
    _returning(w, b, ms)
    return "MERGE", _WRITE


def _copy(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    is_from = bool(b.get("is_from"))
    cs = scope
    rel = b.get("relation")
    if rel is not None:
        table = w.relname(rel, None)
        assert table is not None
        if is_from:
            w.write(table)
        else:
            w.read.add(table)
        cs = _Scope(scope)
        cs.rels[table.rsplit(".", 1)[1]] = table
        attlist = b.get("attlist")
        if attlist:
            w.columns.update(f"{table}.{n}" for n in _names(attlist))
        else:
            w.columns.add(f"{table}.*")
    query = b.get("query")
    if query is not None:
        w.walk(query, scope)
    where = b.get("whereClause")
    if where is not None:
        w.walk(where, cs)
    if b.get("is_program"):
        w.dangers.add("copy_program")
        return "COPY", _ADMIN
    if b.get("filename") is not None:
        w.dangers.add("server_file")
        return "COPY", _ADMIN
    return "COPY", _WRITE if is_from else _READ


def _is_false(arg: Any) -> bool:
    """EXPLAIN option value: only an explicit false turns ANALYZE off."""
    if type(arg) is not dict:
        return False
    if "String" in arg:
        return str(arg["String"].get("sval", "")).lower() in _FALSE_WORDS
    if "Integer" in arg:
        return not arg["Integer"].get("ival", 0)
    if "Boolean" in arg:
        return not arg["Boolean"].get("boolval", False)
    value = _fold(arg)
    return value is False or value == 0


def _explain(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    analyze = False
    for opt in b.get("options", []):
        d = opt.get("DefElem", {})
        if str(d.get("defname", "")).lower() == "analyze":
            analyze = not _is_false(d.get("arg"))
    ((name, body),) = b["query"].items()
    if analyze:  # EXPLAIN ANALYZE runs the statement
        return "EXPLAIN", w.stmt(name, body, scope)[1]
    previous = w.executing
    w.executing = False
    try:
        w.stmt(name, body, scope)
    finally:
        w.executing = previous
    return "EXPLAIN", _READ


def _prepare(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    if w.prepared is None:
        w.prepared = str(b.get("name", ""))
    ((name, body),) = b["query"].items()
    return "PREPARE", w.stmt(name, body, scope)[1]


def _execute(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.executes.append(str(b.get("name", "")))
    w.walk(b.get("params"), scope)
    return "EXECUTE", _OTHER


def _declare(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    ((name, body),) = b["query"].items()
    return "DECLARE CURSOR", max(_READ, w.stmt(name, body, scope)[1])


def _fetch(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    return ("MOVE" if b.get("ismove") else "FETCH"), _READ


def _create_table_as(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    into = b.get("into", {})
    if "rel" in into:
        w.target(into["rel"])
    w.walk(b.get("query"), scope)
    if b.get("objtype") == "OBJECT_MATVIEW":
        return "CREATE MATERIALIZED VIEW", _DDL
    return "CREATE TABLE AS", _DDL


def _truncate(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    for item in b.get("relations", []):
        rv = item.get("RangeVar")
        if rv is not None:
            w.target(rv)
    w.dangers.add("truncate")
    if w.executing:
        w.unfiltered = True
    return "TRUNCATE TABLE", _DDL


def _drop(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    objtype = str(b.get("removeType", ""))
    w.dangers.add("drop")
    for obj in b.get("objects", []):
        lst = obj.get("List")
        if lst is None:
            continue
        parts = _names(lst.get("items", []))
        if objtype in _RELATION_OBJECTS and parts:
            w.write(_qualified(parts, w.schema))
        elif objtype in _TABLE_CHILD_OBJECTS and len(parts) >= 2:
            w.write(_qualified(parts[:-1], w.schema))
    return f"DROP {_obj_word(objtype)}", _DDL if objtype in _DDL_OBJECTS else _ADMIN


def _alter_table(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    kind = _DDL
    ts = scope
    rel = b.get("relation")
    if rel is not None:
        table, alias = w.target(rel)
        ts = _Scope(scope)
        ts.rels[alias] = table
    for item in b.get("cmds", []):
        cmd = item.get("AlterTableCmd")
        if cmd is None:
            kind = _ADMIN
            continue
        subtype = str(cmd.get("subtype", ""))
        if subtype in _ADMIN_ALTER_TABLE:
            kind = _ADMIN
        if subtype.startswith("AT_Drop"):
            w.dangers.add("drop")
        w.fields(cmd, ts)
    return f"ALTER {_obj_word(str(b.get('objtype', 'OBJECT_TABLE')))}", kind


def _object_stmt(type_key: str, owner: bool = False) -> _StmtHandler:
    """ALTER ... RENAME / SET SCHEMA / OWNER TO: the tag and kind follow the object type."""

    def handler(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
        objtype = str(b.get(type_key, ""))
        kind = _ADMIN if owner or objtype in _ADMIN_OBJECTS else _DDL
        if objtype == "OBJECT_ROLE":
            w.dangers.add("role_change")
        rel = b.get("relation")
        inner = scope
        if rel is not None:
            table, alias = w.target(rel)
            inner = _Scope(scope)
            inner.rels[alias] = table
        w.fields(b, inner, _SKIP_RELATION)
        return f"ALTER {_obj_word(objtype)}", kind

    return handler


def _comment(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    objtype = str(b.get("objtype", ""))
    lst = b.get("object", {}).get("List")
    if lst is not None:
        parts = _names(lst.get("items", []))
        if objtype in _RELATION_OBJECTS and parts:
            w.write(_qualified(parts, w.schema))
        elif objtype == "OBJECT_COLUMN" and len(parts) >= 2:
            w.write(_qualified(parts[:-1], w.schema))
    return "COMMENT", _DDL


def _grant(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.dangers.update(("privilege_change", "role_change"))
    if b.get("targtype", "ACL_TARGET_OBJECT") == "ACL_TARGET_OBJECT" and b.get("objtype") in (
        "OBJECT_TABLE",
        "OBJECT_SEQUENCE",
    ):
        for item in b.get("objects", []):
            rv = item.get("RangeVar")
            if rv is not None:
                w.target(rv)
    return ("GRANT" if b.get("is_grant") else "REVOKE"), _ADMIN


def _grant_role(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.dangers.update(("privilege_change", "role_change"))
    return ("GRANT" if b.get("is_grant") else "REVOKE"), _ADMIN


def _create_role(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.dangers.add("role_change")
    kind = str(b.get("stmt_type", "ROLESTMT_ROLE")).removeprefix("ROLESTMT_")
    return f"CREATE {kind}", _ADMIN


def _set(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    kind = str(b.get("kind", "VAR_SET_VALUE"))
    name = str(b.get("name", "")).lower()
    tag = "RESET" if kind in ("VAR_RESET", "VAR_RESET_ALL") else "SET"
    if name in _ROLE_SETTINGS:
        w.dangers.add("role_change")
        return tag, _ADMIN
    if kind == "VAR_RESET_ALL":
        w.dangers.add("settings_change")
    elif kind == "VAR_SET_MULTI":
        if _allows_writes(b.get("args", [])):
            w.dangers.add("settings_change")
    elif name in _ADMIN_SETTINGS or name.startswith("log_"):
        w.dangers.add("settings_change")
        return tag, _ADMIN
    elif name not in _HARMLESS_SETTINGS:
        w.dangers.add("settings_change")
    w.walk(b.get("args"), scope)
    return tag, _OTHER


def _allows_writes(options: list[_Node]) -> bool:
    """READ WRITE in a transaction mode list: it overrides a read-only default."""
    for opt in options:
        d = opt.get("DefElem", {})
        if d.get("defname") == "transaction_read_only" and _fold(d.get("arg")) in (0, False):
            return True
    return False


def _transaction(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    kind = str(b.get("kind", "TRANS_STMT_BEGIN"))
    tag, level = _TRANSACTION_TAGS.get(kind, (kind.removeprefix("TRANS_STMT_"), _ADMIN))
    if _allows_writes(b.get("options", [])):
        w.dangers.add("settings_change")
    return tag, level


def _discard(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    if b.get("target", "DISCARD_ALL") == "DISCARD_ALL":
        # DISCARD ALL includes SET SESSION AUTHORIZATION DEFAULT.
        w.dangers.add("role_change")
        return "DISCARD", _ADMIN
    return "DISCARD", _OTHER


def _do(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.dangers.add("do_block")
    language, body = "plpgsql", None
    for arg in b.get("args", []):
        d = arg.get("DefElem", {})
        if d.get("defname") == "language":
            language = _sval(d["arg"]).lower()
        elif d.get("defname") == "as":
            body = _sval(d["arg"])
    if body is not None and language == "plpgsql":
        w.plpgsql(_plpgsql_wrapper(body))
    return "DO", _ADMIN


def _create_function(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.dangers.add("function_definition")
    tag = "CREATE PROCEDURE" if b.get("is_procedure") else "CREATE FUNCTION"
    language: str | None = None
    body: list[str] = []
    for opt in b.get("options", []):
        d = opt.get("DefElem", {})
        if d.get("defname") == "language":
            language = _sval(d["arg"]).lower()
        elif d.get("defname") == "as":
            arg = d.get("arg", {})
            items = arg["List"].get("items", []) if "List" in arg else [arg]
            body = [_sval(i) for i in items if "String" in i]
    w.fields(b, scope, _SKIP_OPTIONS)  # sql_body (BEGIN ATOMIC), parameter defaults
    if language is None or language == "sql":
        for text in body:
            w.embedded_sql(text, 0)
        return tag, _DDL
    if language == "plpgsql":
        # The statement's own text keeps its parameter declarations (OUT parameters are
        # assignable); a bare wrapper around the body is the fallback.
        if not (w.source and w.depth == 0 and w.plpgsql(w.source)):
            for text in body:
                w.plpgsql(_plpgsql_wrapper(text))
        return tag, _DDL
    return tag, _ADMIN  # C, untrusted PLs: arbitrary code in the server process


def _plpgsql_wrapper(body: str) -> str:
    quote = "$lockgate$"
    while quote in body:
        quote = quote[:-1] + "_$"
    return f"CREATE FUNCTION lockgate_do() RETURNS void LANGUAGE plpgsql AS {quote}{body}{quote}"


def _create_trigger(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    table, alias = w.target(b["relation"])
    ts = _Scope(scope)
    ts.rels[alias] = table
    ts.rels["new"] = ts.rels["old"] = table
    fn = _names(b.get("funcname", []))
    if fn:
        w.functions.add(".".join(fn))
    w.fields(b, ts, _SKIP_TRIGGER)
    return "CREATE TRIGGER", _DDL


def _rule(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    table, _alias = w.target(b["relation"])
    rs = _Scope(scope)
    rs.rels["new"] = rs.rels["old"] = table
    w.fields(b, rs, _SKIP_RELATION)
    return "CREATE RULE", _DDL


def _create_schema(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    previous = w.schema
    w.schema = str(b.get("schemaname") or previous).lower()
    try:
        w.walk(b.get("schemaElts"), scope)
    finally:
        w.schema = previous
    return "CREATE SCHEMA", _DDL


def _create_extension(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    danger = _EXTENSION_DANGERS.get(str(b.get("extname", "")).lower())
    if danger:
        w.dangers.add(danger)
    return "CREATE EXTENSION", _ADMIN


def _create_foreign_table(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    base = b.get("base", {})
    if "relation" in base:
        w.target(base["relation"])
    w.fields(base, scope, _SKIP_RELATION)
    for opt in b.get("options", []):
        name = opt.get("DefElem", {}).get("defname")
        if name == "filename":
            w.dangers.add("server_file")
        elif name == "program":
            w.dangers.add("copy_program")
    return "CREATE FOREIGN TABLE", _ADMIN if "server_file" in w.dangers else _DDL


def _define(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    objtype = str(b.get("kind", ""))
    w.fields(b, scope)
    return f"CREATE {_obj_word(objtype)}", _ADMIN if objtype in _ADMIN_OBJECTS else _DDL


def _vacuum(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    w.fields(b, scope)
    return ("VACUUM" if b.get("is_vacuumcmd") else "ANALYZE"), _ADMIN


def _call(w: _Walker, b: _Node, scope: _Scope) -> tuple[str, int]:
    call = b.get("funccall")
    if call is not None:
        w.func_call(call, scope)
    return "CALL", _ADMIN


def _unknown_tag(name: str) -> str:
    words: list[str] = []
    for ch in name.removesuffix("Stmt"):
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.upper())
    return "".join(words)


_STMT_HANDLERS: dict[str, _StmtHandler] = {
    "SelectStmt": _select,
    "InsertStmt": _insert,
    "UpdateStmt": _update,
    "DeleteStmt": _delete,
    "MergeStmt": _merge,
    "CopyStmt": _copy,
    "ExplainStmt": _explain,
    "PrepareStmt": _prepare,
    "ExecuteStmt": _execute,
    "DeclareCursorStmt": _declare,
    "FetchStmt": _fetch,
    "CreateTableAsStmt": _create_table_as,
    "TruncateStmt": _truncate,
    "DropStmt": _drop,
    "AlterTableStmt": _alter_table,
    "RenameStmt": _object_stmt("renameType"),
    "AlterObjectSchemaStmt": _object_stmt("objectType"),
    "AlterOwnerStmt": _object_stmt("objectType", owner=True),
    "DefineStmt": _define,
    "CommentStmt": _comment,
    "GrantStmt": _grant,
    "GrantRoleStmt": _grant_role,
    "CreateRoleStmt": _create_role,
    "VariableSetStmt": _set,
    "TransactionStmt": _transaction,
    "DiscardStmt": _discard,
    "DoStmt": _do,
    "CreateFunctionStmt": _create_function,
    "CreateTrigStmt": _create_trigger,
    "RuleStmt": _rule,
    "CreateSchemaStmt": _create_schema,
    "CreateExtensionStmt": _create_extension,
    "CreateForeignTableStmt": _create_foreign_table,
    "VacuumStmt": _vacuum,
    "CallStmt": _call,
}

_D = tuple[str, ...]
# Statements decided by type alone: (tag, kind, dangers, fields holding relations they modify).
_SIMPLE: dict[str, tuple[str, int, _D, frozenset[str]]] = {
    "CreateStmt": ("CREATE TABLE", _DDL, (), frozenset({"relation"})),
    "IndexStmt": ("CREATE INDEX", _DDL, (), frozenset({"relation"})),
    "ViewStmt": ("CREATE VIEW", _DDL, (), frozenset({"view"})),
    "CreateSeqStmt": ("CREATE SEQUENCE", _DDL, (), frozenset({"sequence"})),
    "AlterSeqStmt": ("ALTER SEQUENCE", _DDL, (), frozenset({"sequence"})),
    "RefreshMatViewStmt": ("REFRESH MATERIALIZED VIEW", _DDL, (), frozenset({"relation"})),
    "CreateStatsStmt": ("CREATE STATISTICS", _DDL, (), frozenset()),
    "AlterStatsStmt": ("ALTER STATISTICS", _DDL, (), frozenset()),
    "CompositeTypeStmt": ("CREATE TYPE", _DDL, (), frozenset()),
    "CreateEnumStmt": ("CREATE TYPE", _DDL, (), frozenset()),
    "CreateRangeStmt": ("CREATE TYPE", _DDL, (), frozenset()),
    "AlterEnumStmt": ("ALTER TYPE", _DDL, (), frozenset()),
    "AlterTypeStmt": ("ALTER TYPE", _DDL, (), frozenset()),
    "CreateDomainStmt": ("CREATE DOMAIN", _DDL, (), frozenset()),
    "AlterDomainStmt": ("ALTER DOMAIN", _DDL, (), frozenset()),
    "AlterFunctionStmt": ("ALTER FUNCTION", _DDL, (), frozenset()),
    "AlterCollationStmt": ("ALTER COLLATION", _DDL, (), frozenset()),
    "CreateConversionStmt": ("CREATE CONVERSION", _DDL, (), frozenset()),
    "CreateOpClassStmt": ("CREATE OPERATOR CLASS", _DDL, (), frozenset()),
    "CreateOpFamilyStmt": ("CREATE OPERATOR FAMILY", _DDL, (), frozenset()),
    "AlterOpFamilyStmt": ("ALTER OPERATOR FAMILY", _DDL, (), frozenset()),
    "AlterOperatorStmt": ("ALTER OPERATOR", _DDL, (), frozenset()),
    "AlterTSConfigurationStmt": ("ALTER TEXT SEARCH CONFIGURATION", _DDL, (), frozenset()),
    "AlterTSDictionaryStmt": ("ALTER TEXT SEARCH DICTIONARY", _DDL, (), frozenset()),
    "CreateTransformStmt": ("CREATE TRANSFORM", _DDL, (), frozenset()),
    "VariableShowStmt": ("SHOW", _READ, (), frozenset()),
    "ClosePortalStmt": ("CLOSE", _OTHER, (), frozenset()),
    "DeallocateStmt": ("DEALLOCATE", _OTHER, (), frozenset()),
    "ListenStmt": ("LISTEN", _OTHER, (), frozenset()),
    "UnlistenStmt": ("UNLISTEN", _OTHER, (), frozenset()),
    "NotifyStmt": ("NOTIFY", _OTHER, (), frozenset()),
    "ConstraintsSetStmt": ("SET CONSTRAINTS", _OTHER, (), frozenset()),
    "LockStmt": ("LOCK TABLE", _ADMIN, (), frozenset()),
    "ClusterStmt": ("CLUSTER", _ADMIN, (), frozenset()),
    "ReindexStmt": ("REINDEX", _ADMIN, (), frozenset()),
    "CheckPointStmt": ("CHECKPOINT", _ADMIN, (), frozenset()),
    "LoadStmt": ("LOAD", _ADMIN, (), frozenset()),
    "CreatePolicyStmt": ("CREATE POLICY", _ADMIN, (), frozenset({"table"})),
    "AlterPolicyStmt": ("ALTER POLICY", _ADMIN, (), frozenset({"table"})),
    "SecLabelStmt": ("SECURITY LABEL", _ADMIN, (), frozenset()),
    "CreateCastStmt": ("CREATE CAST", _ADMIN, (), frozenset()),
    "CreateAmStmt": ("CREATE ACCESS METHOD", _ADMIN, (), frozenset()),
    "CreatePLangStmt": ("CREATE LANGUAGE", _ADMIN, (), frozenset()),
    "CreateEventTrigStmt": ("CREATE EVENT TRIGGER", _ADMIN, (), frozenset()),
    "AlterEventTrigStmt": ("ALTER EVENT TRIGGER", _ADMIN, (), frozenset()),
    "AlterExtensionStmt": ("ALTER EXTENSION", _ADMIN, (), frozenset()),
    "AlterExtensionContentsStmt": ("ALTER EXTENSION", _ADMIN, (), frozenset()),
    "AlterObjectDependsStmt": ("ALTER", _ADMIN, (), frozenset()),
    "CreatedbStmt": ("CREATE DATABASE", _ADMIN, (), frozenset()),
    "AlterDatabaseStmt": ("ALTER DATABASE", _ADMIN, (), frozenset()),
    "AlterDatabaseRefreshCollStmt": ("ALTER DATABASE", _ADMIN, (), frozenset()),
    "AlterDatabaseSetStmt": ("ALTER DATABASE", _ADMIN, ("settings_change",), frozenset()),
    "DropdbStmt": ("DROP DATABASE", _ADMIN, ("drop",), frozenset()),
    "CreateTableSpaceStmt": ("CREATE TABLESPACE", _ADMIN, ("server_file",), frozenset()),
    "AlterTableSpaceOptionsStmt": ("ALTER TABLESPACE", _ADMIN, (), frozenset()),
    "AlterTableMoveAllStmt": ("ALTER TABLE", _ADMIN, (), frozenset()),
    "DropTableSpaceStmt": ("DROP TABLESPACE", _ADMIN, ("drop",), frozenset()),
    "AlterRoleStmt": ("ALTER ROLE", _ADMIN, ("role_change",), frozenset()),
    "AlterRoleSetStmt": ("ALTER ROLE", _ADMIN, ("role_change", "settings_change"), frozenset()),
    "DropRoleStmt": ("DROP ROLE", _ADMIN, ("role_change", "drop"), frozenset()),
    "DropOwnedStmt": ("DROP OWNED", _ADMIN, ("drop",), frozenset()),
    "ReassignOwnedStmt": ("REASSIGN OWNED", _ADMIN, (), frozenset()),
    "AlterDefaultPrivilegesStmt": (
        "ALTER DEFAULT PRIVILEGES",
        _ADMIN,
        ("privilege_change",),
        frozenset(),
    ),
    "AlterSystemStmt": ("ALTER SYSTEM", _ADMIN, ("alter_system", "settings_change"), frozenset()),
    "CreateFdwStmt": ("CREATE FOREIGN DATA WRAPPER", _ADMIN, ("dblink",), frozenset()),
    "AlterFdwStmt": ("ALTER FOREIGN DATA WRAPPER", _ADMIN, ("dblink",), frozenset()),
    "CreateForeignServerStmt": ("CREATE SERVER", _ADMIN, ("dblink",), frozenset()),
    "AlterForeignServerStmt": ("ALTER SERVER", _ADMIN, ("dblink",), frozenset()),
    "CreateUserMappingStmt": ("CREATE USER MAPPING", _ADMIN, ("dblink",), frozenset()),
    "AlterUserMappingStmt": ("ALTER USER MAPPING", _ADMIN, ("dblink",), frozenset()),
    "DropUserMappingStmt": ("DROP USER MAPPING", _ADMIN, ("dblink", "drop"), frozenset()),
    "ImportForeignSchemaStmt": ("IMPORT FOREIGN SCHEMA", _ADMIN, ("dblink",), frozenset()),
    "CreatePublicationStmt": ("CREATE PUBLICATION", _ADMIN, (), frozenset()),
    "AlterPublicationStmt": ("ALTER PUBLICATION", _ADMIN, (), frozenset()),
    "CreateSubscriptionStmt": ("CREATE SUBSCRIPTION", _ADMIN, ("dblink",), frozenset()),
    "AlterSubscriptionStmt": ("ALTER SUBSCRIPTION", _ADMIN, ("dblink",), frozenset()),
    "DropSubscriptionStmt": ("DROP SUBSCRIPTION", _ADMIN, ("drop",), frozenset()),
    # Only found nested: ALTER TABLE ... REPLICA IDENTITY, BEGIN ATOMIC function bodies.
    "ReplicaIdentityStmt": ("REPLICA IDENTITY", _DDL, (), frozenset()),
    "ReturnStmt": ("RETURN", _READ, (), frozenset()),
}

_NodeHandler = Callable[[_Walker, _Node, _Scope], None]
_NODE_HANDLERS: dict[str, _NodeHandler] = {
    "ColumnRef": _Walker.column_ref,
    "FuncCall": _Walker.func_call,
    "RangeVar": _Walker.rangevar,
    "A_Indirection": _Walker.indirection,
    "SelectStmt": _select_body,
}

# Nodes that can hold no relation, column or function call.
_LEAVES = frozenset(
    {
        "String",
        "Integer",
        "Float",
        "Boolean",
        "BitString",
        "A_Const",
        "A_Star",
        "ParamRef",
        "SQLValueFunction",
        "TypeName",
        "RoleSpec",
        "LockingClause",  # FOR UPDATE OF <alias>: names aliases, not tables
        "CurrentOfExpr",
    }
)

_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
_SELECT_SKIP = frozenset(
    {"withClause", "fromClause", "larg", "rarg", "lockingClause", "intoClause"}
)
_SKIP_RELATION = frozenset({"relation"})
_SKIP_ALIAS = frozenset({"alias"})
_SKIP_NAME = frozenset({"name"})
_SKIP_FUNCNAME = frozenset({"funcname"})
_SKIP_TARGETLIST = frozenset({"targetList"})
_SKIP_OPTIONS = frozenset({"options", "funcname", "returnType"})
_SKIP_TRIGGER = frozenset({"relation", "funcname"})

_TRANSACTION_TAGS: dict[str, tuple[str, int]] = {
    "TRANS_STMT_BEGIN": ("BEGIN", _OTHER),
    "TRANS_STMT_START": ("START TRANSACTION", _OTHER),
    "TRANS_STMT_COMMIT": ("COMMIT", _OTHER),
    "TRANS_STMT_ROLLBACK": ("ROLLBACK", _OTHER),
    "TRANS_STMT_SAVEPOINT": ("SAVEPOINT", _OTHER),
    "TRANS_STMT_RELEASE": ("RELEASE", _OTHER),
    "TRANS_STMT_ROLLBACK_TO": ("ROLLBACK", _OTHER),
    "TRANS_STMT_PREPARE": ("PREPARE TRANSACTION", _OTHER),
    # Two-phase commit acts on transactions other sessions left prepared.
    "TRANS_STMT_COMMIT_PREPARED": ("COMMIT PREPARED", _ADMIN),
    "TRANS_STMT_ROLLBACK_PREPARED": ("ROLLBACK PREPARED", _ADMIN),
}

_OBJ_WORDS = {
    "OBJECT_MATVIEW": "MATERIALIZED VIEW",
    "OBJECT_FOREIGN_SERVER": "SERVER",
    "OBJECT_FDW": "FOREIGN DATA WRAPPER",
    "OBJECT_STATISTIC_EXT": "STATISTICS",
    "OBJECT_TSCONFIGURATION": "TEXT SEARCH CONFIGURATION",
    "OBJECT_TSDICTIONARY": "TEXT SEARCH DICTIONARY",
    "OBJECT_TSPARSER": "TEXT SEARCH PARSER",
    "OBJECT_TSTEMPLATE": "TEXT SEARCH TEMPLATE",
    "OBJECT_OPCLASS": "OPERATOR CLASS",
    "OBJECT_OPFAMILY": "OPERATOR FAMILY",
    "OBJECT_LARGEOBJECT": "LARGE OBJECT",
    "OBJECT_TABCONSTRAINT": "TABLE",
    "OBJECT_COLUMN": "TABLE",
    "OBJECT_ATTRIBUTE": "TYPE",
}
_RELATION_OBJECTS = frozenset(
    {
        "OBJECT_TABLE",
        "OBJECT_VIEW",
        "OBJECT_MATVIEW",
        "OBJECT_INDEX",
        "OBJECT_SEQUENCE",
        "OBJECT_FOREIGN_TABLE",
    }
)
_TABLE_CHILD_OBJECTS = frozenset({"OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY"})
_DDL_OBJECTS = _RELATION_OBJECTS | {
    "OBJECT_SCHEMA",
    "OBJECT_TYPE",
    "OBJECT_DOMAIN",
    "OBJECT_FUNCTION",
    "OBJECT_PROCEDURE",
    "OBJECT_ROUTINE",
    "OBJECT_AGGREGATE",
    "OBJECT_TRIGGER",
    "OBJECT_RULE",
    "OBJECT_OPERATOR",
    "OBJECT_OPCLASS",
    "OBJECT_OPFAMILY",
    "OBJECT_COLLATION",
    "OBJECT_CONVERSION",
    "OBJECT_STATISTIC_EXT",
    "OBJECT_TSCONFIGURATION",
    "OBJECT_TSDICTIONARY",
    "OBJECT_TRANSFORM",
    "OBJECT_COLUMN",
    "OBJECT_TABCONSTRAINT",
    "OBJECT_DOMCONSTRAINT",
    "OBJECT_ATTRIBUTE",
}
_ADMIN_OBJECTS = frozenset(
    {
        "OBJECT_ROLE",
        "OBJECT_DATABASE",
        "OBJECT_TABLESPACE",
        "OBJECT_EXTENSION",
        "OBJECT_LANGUAGE",
        "OBJECT_EVENT_TRIGGER",
        "OBJECT_FOREIGN_SERVER",
        "OBJECT_FDW",
        "OBJECT_PUBLICATION",
        "OBJECT_SUBSCRIPTION",
        "OBJECT_ACCESS_METHOD",
        "OBJECT_CAST",
        "OBJECT_POLICY",
        "OBJECT_TSPARSER",
        "OBJECT_TSTEMPLATE",
        "OBJECT_USER_MAPPING",
        "OBJECT_LARGEOBJECT",
        "OBJECT_PARAMETER_ACL",
    }
)
_ADMIN_ALTER_TABLE = frozenset(
    {
        "AT_ChangeOwner",
        "AT_EnableRowSecurity",
        "AT_DisableRowSecurity",
        "AT_ForceRowSecurity",
        "AT_NoForceRowSecurity",
    }
)

_ROLE_SETTINGS = frozenset({"role", "session_authorization"})
_HARMLESS_SETTINGS = frozenset(
    {
        "application_name",
        "client_encoding",
        "datestyle",
        "timezone",
        "search_path",
        "statement_timeout",
        "extra_float_digits",
        "intervalstyle",
        "standard_conforming_strings",
        "lock_timeout",
        "client_min_messages",
        "bytea_output",
        "idle_in_transaction_session_timeout",
    }
)
# Superuser-only settings that switch off integrity or audit (log_* is matched by prefix too).
_ADMIN_SETTINGS = frozenset(
    {"session_replication_role", "allow_system_table_mods", "ignore_system_indexes"}
)

_FUNCTION_DANGERS: dict[str, tuple[str, ...]] = {
    "pg_read_file": ("server_file",),
    "pg_read_binary_file": ("server_file",),
    "pg_ls_dir": ("server_file",),
    "pg_stat_file": ("server_file",),
    "pg_file_write": ("server_file",),
    "pg_file_rename": ("server_file",),
    "pg_file_unlink": ("server_file",),
    "pg_file_sync": ("server_file",),
    "pg_logdir_ls": ("server_file",),
    "pg_ls_logdir": ("server_file",),
    "pg_ls_waldir": ("server_file",),
    "pg_ls_tmpdir": ("server_file",),
    "pg_ls_archive_statusdir": ("server_file",),
    "lo_import": ("server_file", "large_object"),
    "lo_export": ("server_file", "large_object"),
    "pg_terminate_backend": ("backend_control",),
    "pg_cancel_backend": ("backend_control",),
    "pg_reload_conf": ("backend_control",),
    "pg_rotate_logfile": ("backend_control",),
    "pg_promote": ("backend_control",),
    "pg_switch_wal": ("backend_control",),
    "pg_create_restore_point": ("backend_control",),
    "pg_backup_start": ("backend_control",),
    "pg_backup_stop": ("backend_control",),
    "pg_wal_replay_pause": ("backend_control",),
    "pg_wal_replay_resume": ("backend_control",),
    "pg_log_backend_memory_contexts": ("backend_control",),
    "pg_create_physical_replication_slot": ("backend_control",),
    "pg_create_logical_replication_slot": ("backend_control",),
    "pg_drop_replication_slot": ("backend_control",),
    "set_config": ("settings_change",),
    "schema_to_xml": ("dynamic_sql",),
    "schema_to_xmlschema": ("dynamic_sql",),
    "schema_to_xml_and_xmlschema": ("dynamic_sql",),
    "database_to_xml": ("dynamic_sql",),
    "database_to_xmlschema": ("dynamic_sql",),
    "database_to_xml_and_xmlschema": ("dynamic_sql",),
}
# Built-ins that run SQL text they are given: argument index of the SQL.
_SQL_TEXT_FUNCTIONS = {
    "query_to_xml": 0,
    "query_to_xmlschema": 0,
    "query_to_xml_and_xmlschema": 0,
    "ts_stat": 0,
    "ts_rewrite": 1,
}
# Built-ins that dump a whole table named by their first argument.
_TABLE_TEXT_FUNCTIONS = frozenset(
    {"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema"}
)
_SPECIAL_FUNCTIONS = (
    frozenset(_FUNCTION_DANGERS)
    | frozenset(_SQL_TEXT_FUNCTIONS)
    | _TABLE_TEXT_FUNCTIONS
    | {"nextval", "setval", "loread", "lowrite"}
)
_EXTENSION_DANGERS = {
    "dblink": "dblink",
    "postgres_fdw": "dblink",
    "file_fdw": "server_file",
    "adminpack": "server_file",
}

_PLPGSQL_EXPR_MODE = 2  # RAW_PARSE_PLPGSQL_EXPR: an expression, parsed as SELECT <expr>
_PLPGSQL_ASSIGN_MODES = frozenset({3, 4, 5})  # RAW_PARSE_PLPGSQL_ASSIGN1..3: "x := <expr>"
_MAX_DEPTH = 4


# --- constant folding for WHERE tautologies ------------------------------------------------

_UNKNOWN: Any = object()
_TRUE_WORDS = frozenset({"t", "true", "y", "yes", "on", "1"})
_FALSE_WORDS = frozenset({"f", "false", "n", "no", "off", "0"})
_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    "<>": lambda a, b: bool(a != b),
    "!=": lambda a, b: bool(a != b),
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}
# What `x op x` is for the same non-null x.
_REFLEXIVE = {"=": True, "<=": True, ">=": True, "<>": False, "!=": False, "<": False, ">": False}
_INT_TYPES = frozenset({"int2", "int4", "int8", "int", "integer", "smallint", "bigint"})
_FLOAT_TYPES = frozenset({"float4", "float8", "numeric", "decimal", "real"})
_TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "char", "name"})
_POSITION_KEYS = frozenset({"location", "rexpr_list_start", "rexpr_list_end"})


def _fold(node: Any) -> Any:
    """Constant-fold an expression: a Python value, None for SQL NULL, or _UNKNOWN."""
    if type(node) is not dict or len(node) != 1:
        return _UNKNOWN
    ((key, body),) = node.items()
    folder = _FOLDERS.get(key)
    return folder(body) if folder is not None else _UNKNOWN


def _fold_const(b: _Node) -> Any:
    if b.get("isnull"):
        return None
    for key in ("ival", "boolval", "sval", "fval"):
        if key in b:
            value = b[key].get(key)
            if value is None:
                return {"ival": 0, "boolval": False, "sval": "", "fval": 0.0}[key]
            return float(value) if key == "fval" else value
    return _UNKNOWN


def _fold_cast(b: _Node) -> Any:
    value = _fold(b.get("arg"))
    type_name = b.get("typeName", {})
    names = _names(type_name.get("names", []))
    if value is _UNKNOWN or not names or "arrayBounds" in type_name:
        return _UNKNOWN
    if value is None:
        return None
    target = names[-1]
    try:
        if target in ("bool", "boolean"):
            return _to_bool(value)
        if target in _INT_TYPES:
            return int(value)
        if target in _FLOAT_TYPES:
            return float(value)
        if target in _TEXT_TYPES:
            return str(value).lower() if isinstance(value, bool) else str(value)
    except (TypeError, ValueError):
        return _UNKNOWN
    return _UNKNOWN


def _to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return _UNKNOWN


def _fold_bool(b: _Node) -> Any:
    op = b.get("boolop", "AND_EXPR")
    args = b.get("args", [])
    values = [_fold(a) for a in args]
    if op == "NOT_EXPR":
        v = values[0] if values else _UNKNOWN
        return (not v) if isinstance(v, bool) else (None if v is None else _UNKNOWN)
    if op == "AND_EXPR":
        if any(v is False for v in values):
            return False
        if any(v is not None and not isinstance(v, bool) for v in values):
            return _UNKNOWN
        return None if any(v is None for v in values) else True
    if any(v is True for v in values) or _null_or_not_null(args):
        return True
    if any(v is not None and not isinstance(v, bool) for v in values):
        return _UNKNOWN
    return None if any(v is None for v in values) else False


def _null_or_not_null(args: list[Any]) -> bool:
    """`x IS NULL OR x IS NOT NULL` holds for every row."""
    tests = [a["NullTest"] for a in args if type(a) is dict and "NullTest" in a]
    nulls = [t["arg"] for t in tests if t.get("nulltesttype", "IS_NULL") == "IS_NULL"]
    not_nulls = [t["arg"] for t in tests if t.get("nulltesttype") == "IS_NOT_NULL"]
    return any(_same(a, b) for a in nulls for b in not_nulls)


def _compare(op: str, a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        a, b = _to_bool(a), _to_bool(b)
    elif isinstance(a, str) and not isinstance(b, str):
        a = _to_number(a)
    elif isinstance(b, str) and not isinstance(a, str):
        b = _to_number(b)
    if a is _UNKNOWN or b is _UNKNOWN:
        return _UNKNOWN
    try:
        return _COMPARISONS[op](a, b)
    except TypeError:
        return _UNKNOWN


def _to_number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return _UNKNOWN


def _fold_expr(b: _Node) -> Any:
    kind = b.get("kind", "AEXPR_OP")
    names = _names(b.get("name", []))
    op = names[-1] if names else ""
    left, right = b.get("lexpr"), b.get("rexpr")
    if kind in ("AEXPR_OP", "AEXPR_DISTINCT", "AEXPR_NOT_DISTINCT"):
        if left is None or (kind == "AEXPR_OP" and op not in _COMPARISONS):
            return _UNKNOWN
        if _same(left, right):
            if kind == "AEXPR_OP":
                return _REFLEXIVE[op]
            return kind == "AEXPR_NOT_DISTINCT"
        a, c = _fold(left), _fold(right)
        if a is _UNKNOWN or c is _UNKNOWN:
            return _UNKNOWN
        if kind == "AEXPR_OP":
            return _compare(op, a, c)
        equal = (a is None and c is None) or (
            a is not None and c is not None and _compare("=", a, c) is True
        )
        return equal if kind == "AEXPR_NOT_DISTINCT" else not equal
    if kind == "AEXPR_IN":
        items = right.get("List", {}).get("items", []) if type(right) is dict else []
        if not items:
            return _UNKNOWN
        hit: Any
        if any(_same(left, i) for i in items):
            hit = True
        else:
            a = _fold(left)
            values = [_compare("=", a, _fold(i)) for i in items]
            if any(v is True for v in values):
                hit = True
            elif any(v is _UNKNOWN for v in values) or a is _UNKNOWN:
                return _UNKNOWN
            elif any(v is None for v in values):
                hit = None
            else:
                hit = False
        if op == "=" or hit is None:
            return hit
        return not hit
    if kind in ("AEXPR_BETWEEN", "AEXPR_NOT_BETWEEN"):
        items = right.get("List", {}).get("items", []) if type(right) is dict else []
        if len(items) != 2:
            return _UNKNOWN
        x = _fold(left)
        low = _compare(">=", x, _fold(items[0]))
        high = _compare("<=", x, _fold(items[1]))
        if low is _UNKNOWN or high is _UNKNOWN or low is None or high is None:
            return _UNKNOWN
        inside = low and high
        return inside if kind == "AEXPR_BETWEEN" else not inside
    return _UNKNOWN


def _fold_null_test(b: _Node) -> Any:
    value = _fold(b.get("arg"))
    if value is _UNKNOWN:
        return _UNKNOWN
    is_null = value is None
    return is_null if b.get("nulltesttype", "IS_NULL") == "IS_NULL" else not is_null


def _fold_bool_test(b: _Node) -> Any:
    value = _fold(b.get("arg"))
    if value is not None and not isinstance(value, bool):
        return _UNKNOWN
    test = b.get("booltesttype", "IS_TRUE")
    return {
        "IS_TRUE": value is True,
        "IS_NOT_TRUE": value is not True,
        "IS_FALSE": value is False,
        "IS_NOT_FALSE": value is not False,
        "IS_UNKNOWN": value is None,
        "IS_NOT_UNKNOWN": value is not None,
    }.get(test, _UNKNOWN)


def _fold_coalesce(b: _Node) -> Any:
    for arg in b.get("args", []):
        value = _fold(arg)
        if value is not None:
            return value
    return None


_FOLDERS: dict[str, Callable[[_Node], Any]] = {
    "A_Const": _fold_const,
    "TypeCast": _fold_cast,
    "BoolExpr": _fold_bool,
    "A_Expr": _fold_expr,
    "NullTest": _fold_null_test,
    "BooleanTest": _fold_bool_test,
    "CoalesceExpr": _fold_coalesce,
}


def _same(a: Any, b: Any) -> bool:
    """Structural equality of two parse trees, ignoring source positions."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        keys_a = a.keys() - _POSITION_KEYS
        if keys_a != b.keys() - _POSITION_KEYS:
            return False
        return all(_same(a[k], b[k]) for k in keys_a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
