"""SQL understanding for policy decisions: pure, I/O-free analysis of PostgreSQL statements.

Every module parses with the real PostgreSQL grammar (pglast / libpg_query) and walks the raw
parse tree: `classify` says what a statement does (kind, tables, columns, dangers) for Cedar
context; `lineage` says which source columns feed each result column.
"""
