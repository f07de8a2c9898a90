"""Alembic migrations of the control plane's store; `control_plane.migrate.upgrade` runs them."""
