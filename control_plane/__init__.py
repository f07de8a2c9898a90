"""Lockgate's control plane: REST API, policy compiler, gRPC service for nodes, audit store."""
