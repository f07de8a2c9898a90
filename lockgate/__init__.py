"""Lockgate: an access gateway between AI agents and production infrastructure.

This package is the shared kernel (settings, tokens, the policy model and its evaluation) and the
`lockgate` command line; it imports neither plane, which both import it.
"""

__version__ = "0.1.0"
