"""Lockgate data-plane node: protocol listeners, local enforcement, audit spool."""
