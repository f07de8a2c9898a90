"""PostgreSQL wire protocol v3: codec (sans-io), authentication, session, adapter."""
