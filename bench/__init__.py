"""Lockgate benchmarks: each scenario measured side by side against a baseline in the same run."""
