"""PolicyEngine: decisions asked again come from memory and equal what Cedar says afresh."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.policy import ACTIONS, PolicyEngine, Principal, Resource

NAMES = ["alice", 'qu"ote', "back\\slash", "new\nline", "ünï"]
POLICIES = [
    (
        "readers",
        'permit(principal in Group::"readers", action in [Action::"connect", Action::"read"], '
        "resource);",
    ),
    (
        "no-orders",
        '@message("orders are off limits")\n'
        'forbid(principal, action, resource) when { context.tables.contains("orders") };',
    ),
    ("office-hours", "forbid(principal, action, resource) when { context.hour < 6 };"),
    (
        "quoted",
        f'permit(principal == Identity::"{NAMES[1].replace(chr(34), chr(92) + chr(34))}", '
        'action, resource == Connection::"appdb");',
    ),
]


def engine(extra: list[tuple[str, str]] | None = None) -> PolicyEngine:
    return PolicyEngine(
        [*POLICIES, *(extra or [])],
        [Principal(n, groups=() if n == NAMES[1] else ("readers",)) for n in NAMES],
        [Resource("appdb", "postgres"), Resource('we"ird', "postgres")],
    )


contexts = st.fixed_dictionaries(
    {
        "tables": st.lists(st.sampled_from(["orders", "users", "t"]), max_size=2, unique=True),
        "hour": st.integers(0, 23),
        "now": st.integers(0, 4_000_000_000),
    }
)
requests = st.tuples(
    st.sampled_from([*NAMES, "stranger"]),
    st.sampled_from(ACTIONS),
    st.sampled_from(["appdb", 'we"ird', "missing"]),
    contexts,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(requests, min_size=1, max_size=20))
def test_remembered_decisions_equal_fresh_ones(asked):
    e = engine()
    for identity, action, connection, context in asked + asked:
        got = e.authorize(identity, action, connection, context)
        fresh = engine()._authorize(identity, action, connection, {**context})
        assert got == fresh


def test_names_that_need_quoting_in_cedar_text_are_decided_by_their_own_policy():
    e = engine()
    assert e.authorize(NAMES[1], "write", "appdb", {"hour": 12}).allowed
    assert not e.authorize(NAMES[1], "write", 'we"ird', {"hour": 12}).allowed
    assert not e.authorize(NAMES[1], "read", 'we"ird', {"hour": 12}).allowed
    assert e.authorize(NAMES[3], "read", 'we"ird', {"hour": 12}).allowed  # a reader


def test_a_forbid_gives_its_message_and_name():
    d = engine().authorize("alice", "read", "appdb", {"tables": ["orders"], "hour": 12})
    assert not d.allowed
    assert d.policies == ("no-orders",)
    assert d.message == "orders are off limits"
    assert d.reason == "read on appdb forbidden by no-orders"


def test_time_counts_only_when_a_policy_reads_it():
    assert not engine()._reads_now
    grant = ("grant/1", "permit(principal, action, resource) when { context.now < 1000 };")
    e = engine([grant])
    assert e._reads_now
    assert e.authorize("stranger", "read", "appdb", {"now": 999, "hour": 12}).allowed
    assert not e.authorize("stranger", "read", "appdb", {"now": 1000, "hour": 12}).allowed
    # An escape in a string spelling the attribute still counts as reading it.
    escaped = ("x", 'forbid(principal, action, resource) when { context["\\u{6e}ow"] > 5 };')
    assert engine([escaped])._reads_now


def test_memory_is_bounded(monkeypatch):
    import lockgate.policy as policy

    monkeypatch.setattr(policy, "DECIDED_LIMIT", 8)
    e = engine()
    for hour in range(20):
        e.authorize("alice", "read", "appdb", {"hour": hour})
    assert len(e._decided) <= 8
