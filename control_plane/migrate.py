"""Schema migrations, run in code: `upgrade(url)` brings a store to the newest revision.

Alembic is configured here rather than from an ini file, so an installed package can migrate
from anywhere; the root `alembic.ini` exists for people who run `alembic` by hand.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

import migrations
from control_plane.db import sync_url


def alembic_config(url: str) -> Config:
    """An alembic Config for the store at `url` (async or sync driver URL)."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    # Passed as an attribute, not a main option: ini interpolation would mangle a `%` in a
    # percent-encoded password.
    config.attributes["url"] = sync_url(url)
    return config


def upgrade(url: str) -> None:
    """Run every migration not yet applied to the store at `url`; idempotent."""
    parsed = make_url(url)
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "head")
