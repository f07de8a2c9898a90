"""Alembic environment: migrates the control plane's store with its synchronous driver.

The URL comes from `control_plane.migrate` (config attribute `url`), else `sqlalchemy.url` in
alembic.ini, else the Lockgate settings (`LOCKGATE_DATABASE_URL`, or SQLite in `LOCKGATE_HOME`).
On PostgreSQL an advisory lock serialises replicas that start, and migrate, at the same time.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlmodel import SQLModel

import control_plane.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from control_plane.db import sync_url
from lockgate.settings import Settings

# Any fixed 64-bit number will do; every Lockgate process uses the same one.
MIGRATION_LOCK_ID = 0x4C6F636B67617465

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def database_url() -> str:
    """The synchronous URL of the store to migrate."""
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return sync_url(url or Settings().db_url)


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (`alembic upgrade head --sql`)."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations against the database."""
    engine = create_engine(database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=target_metadata,
                render_as_batch=connection.dialect.name == "sqlite",
                compare_type=True,
            )
            with context.begin_transaction():
                if connection.dialect.name == "postgresql":
                    # Held until this transaction ends; a second replica waits, then finds
                    # the migrations applied.
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                    )
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
