"""compile_bundle: what a node receives for a store's configuration, field by field."""

from __future__ import annotations

from datetime import timedelta

from control_plane.compiler import compile_bundle, epoch_ms
from control_plane.db import Database
from control_plane.models import (
    Connection,
    Group,
    Identity,
    IdentityGroup,
    Policy,
    Token,
    utcnow,
)


async def test_bundle_carries_identities_live_tokens_and_connections(db: Database) -> None:
    later = utcnow() + timedelta(hours=1)
    async with db.session() as session:
        ops, dev = Group(name="ops"), Group(name="dev")
        ada = Identity(name="ada", kind="user", role="admin", scram_salt=b"salt-a")
        bot = Identity(name="bot", kind="service", scram_salt=b"salt-b")
        session.add_all([ops, dev, ada, bot])
        await session.flush()
        assert ada.id is not None and bot.id is not None
        assert ops.id is not None and dev.id is not None
        session.add_all(
            [
                IdentityGroup(identity_id=ada.id, group_id=ops.id),
                IdentityGroup(identity_id=ada.id, group_id=dev.id),
                Connection(
                    name="zeta",
                    host="10.0.0.2",
                    port=5433,
                    password_encrypted=b"x",
                    node_labels={"region": "eu"},
                    guardrails=["no-ddl"],
                ),
                Connection(
                    name="alpha",
                    type="mysql",
                    host="10.0.0.1",
                    port=3306,
                    database="shop",
                    username="app",
                    password_encrypted=b"x",
                ),
                Policy(name="p", cedar="permit(principal, action, resource);"),
            ]
        )
        keys = {"secret_sha256": b"h", "scram_stored_key": b"s", "scram_server_key": b"k"}
        session.add_all(
            [
                Token(id="live", identity_id=ada.id, scram_iterations=4096, **keys),
                Token(id="until", identity_id=bot.id, expires_at=later, **keys),
                Token(id="gone", identity_id=bot.id, revoked_at=utcnow(), **keys),
                Token(id="past", identity_id=bot.id, expires_at=utcnow() - timedelta(1), **keys),
            ]
        )
        await session.commit()

    async with db.session() as session:
        bundle = await compile_bundle(session)

    identities = {i.name: i for i in bundle.identities}
    assert set(identities) >= {"ada", "bot"}
    assert list(identities["ada"].groups) == ["dev", "ops"]
    assert (identities["ada"].kind, identities["ada"].role) == ("user", "admin")
    assert identities["ada"].scram_salt == b"salt-a"
    assert list(identities["bot"].groups) == []
    tokens = {t.id: t for t in bundle.tokens}
    assert {"live", "until"} <= set(tokens) and not {"gone", "past"} & set(tokens)
    assert tokens["live"].identity == "ada" and tokens["live"].expires_at_ms == 0
    assert tokens["live"].secret_sha256 == b"h" and tokens["live"].scram_iterations == 4096
    assert tokens["until"].identity == "bot"
    assert tokens["until"].expires_at_ms == epoch_ms(later)
    assert [c.name for c in bundle.connections] == ["alpha", "zeta"]  # ordered by name
    alpha, zeta = bundle.connections
    assert (alpha.type, alpha.host, alpha.port, alpha.database, alpha.username) == (
        "mysql",
        "10.0.0.1",
        3306,
        "shop",
        "app",
    )
    assert dict(zeta.node_labels) == {"region": "eu"} and list(zeta.guardrails) == ["no-ddl"]
    assert [p.name for p in bundle.policies] == ["p"]
