"""Test harness: real servers (PostgreSQL targets) and real Lockgate processes on free ports."""
