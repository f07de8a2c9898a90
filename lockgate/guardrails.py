"""Built-in guardrail profiles: Cedar `forbid` rules that hold for everyone on the connections
that switch the profile on (`"guardrails": ["production-safety"]` on a connection).

They are code, not data, so every node and the control plane's simulator enforce the same text;
the `@message` annotation is what the client sees when a rule denies a statement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Guardrail:
    id: str
    message: str
    condition: str  # a Cedar boolean expression over `context`

    def cedar(self, profile: str) -> str:
        return (
            f'@id("{self.id}")\n@message("{self.message}")\n'
            "forbid(principal, action, resource) when {\n"
            f'  resource.guardrails.contains("{profile}") &&\n  ({self.condition})\n}};'
        )


PROFILES: dict[str, tuple[Guardrail, ...]] = {
    "production-safety": (
        Guardrail(
            "production-safety/no-drop-or-truncate",
            "DROP and TRUNCATE are blocked on this connection",
            'context.dangers.contains("drop") || context.dangers.contains("truncate")',
        ),
        Guardrail(
            "production-safety/no-unfiltered-writes",
            "UPDATE and DELETE need a WHERE clause that filters rows on this connection",
            "context.unfiltered_write",
        ),
        Guardrail(
            "production-safety/no-privilege-changes",
            "role and privilege changes are blocked on this connection",
            'context.dangers.contains("role_change") || '
            'context.dangers.contains("privilege_change")',
        ),
        Guardrail(
            "production-safety/no-server-programs",
            "running programs or touching files on the database server is blocked",
            'context.dangers.contains("copy_program") || context.dangers.contains("server_file") '
            '|| context.dangers.contains("large_object") || context.dangers.contains("dblink")',
        ),
        Guardrail(
            "production-safety/no-anonymous-code",
            "DO blocks and new functions run code Lockgate cannot inspect; blocked here",
            'context.dangers.contains("do_block") || '
            'context.dangers.contains("function_definition")',
        ),
        Guardrail(
            "production-safety/no-alter-system",
            "ALTER SYSTEM and server control functions are blocked on this connection",
            'context.dangers.contains("alter_system") || '
            'context.dangers.contains("backend_control")',
        ),
    ),
}


def policy_texts() -> list[tuple[str, str]]:
    """(policy name, Cedar text) for every built-in guardrail, ready for a PolicyEngine."""
    return [(rule.id, rule.cedar(profile)) for profile, rules in PROFILES.items() for rule in rules]
