"""The hot paths' read helpers (authserver.rawsql, store.adopt): a read ahead answers each read it
made once and as the read itself would have, a read joins the request's transaction once it has
work in it, and a row adopted into the session behaves as a row the ORM loaded (counted SQL, never
timed)."""

from __future__ import annotations

from sqlalchemy import select

from authserver import accounts, rawsql, resources, store
from authserver.extensions import db
from authserver.models import Client, ResourceServer, User

from .support import RESOURCE


def test_read_ahead_answers_each_read_once_as_the_read_would(app, world, register, statements):
    client_id = register()["client_id"]
    with app.test_request_context():
        reads = [store.session_user_read(world.alice_id, "no-such-session"), store.client_read(client_id),
                 resources.uri_read("https://unknown.example/mcp")]
        with statements() as seen:
            rawsql.read_ahead(reads)
            user, client, unknown = (rawsql.read(*read) for read in reads)
        assert len(seen) == 1  # one statement for the three
        assert (user.email, user.ended) == ("alice@example.com", False)
        assert client.client_id == client_id
        assert unknown is None  # a read that finds nothing is None, not a row of NULLs
        # Each answer is given once: the same read again goes to the database and finds the same.
        with statements() as seen:
            assert rawsql.read(*reads[1]).client_id == client_id
        assert len(seen) == 1
        # A read it did not make (other parameters) is not answered from it.
        with statements() as seen:
            rawsql.read_ahead(reads[:2])
            assert rawsql.read(*store.client_read("another-client")) is None
        assert len(seen) == 2


def test_a_read_joins_the_transaction_of_a_request_that_wrote(app, world):
    """A row the request wrote and has not committed is seen by its next read (a metadata-document
    client saved moments ago), and a request that only read has no transaction to commit."""
    with app.test_request_context():
        assert rawsql.read(*resources.uri_read(RESOURCE)).name == "CRM MCP"
        assert not rawsql.in_transaction()
        db.session.add(ResourceServer(uri="https://new.example/mcp", name="New", credential_id="rs_new",
                                      credential_secret_hash="x", scopes="", default_scopes=""))
        assert rawsql.in_transaction()  # pending, not yet flushed
        db.session.flush()
        assert rawsql.read(*resources.uri_read("https://new.example/mcp")).name == "New"
        db.session.rollback()
        assert rawsql.read(*resources.uri_read("https://new.example/mcp")) is None


def test_an_adopted_row_behaves_as_a_loaded_one(app, world, register, statements):
    client_id = register()["client_id"]
    with app.test_request_context():
        with statements() as seen:
            client = store.get_client(client_id)
            user = store.get_session_user(world.alice_id, "no-such-session")
            # Its columns are loaded (no query to read them); the session knows it by identity.
            assert (client.client_id, user.email) == (client_id, "alice@example.com")
            assert store.get_client(client_id) is client
            assert db.session.get(User, world.alice_id) is user
        assert len(seen) == 3  # the client twice (the second finds the same object), the user once
        assert not db.session.dirty
        # A change is flushed as an UPDATE of that column alone.
        with statements() as seen:
            user.display_name = "Alice A."
            db.session.flush()
        assert len(seen) == 1 and seen[0].startswith("UPDATE users SET display_name=")
        db.session.commit()
    with app.app_context():
        assert db.session.scalar(select(User.display_name).where(User.id == world.alice_id)) == "Alice A."
        assert db.session.scalar(select(Client.client_id).where(Client.client_id == client_id)) == client_id


def test_read_ahead_keeps_the_order_and_every_row_of_a_many_row_read(app, world, register, statements):
    """The hubs of the consent page, read ahead with the user, client and resource, come in the
    order and number the read itself gives (by hub name: a hub created later can come first)."""
    client_id = register()["client_id"]
    with app.app_context():
        aardvark = accounts.create_hub("Aardvark", 10000003)
        accounts.add_member(db.session.get(User, world.alice_id), aardvark, "viewer")
        db.session.commit()
    with app.test_request_context():
        many = store.hubs_and_grants_read(world.alice_id, client_id, RESOURCE)
        direct = rawsql.read_all(*many)
        with statements() as seen:
            rawsql.read_ahead([store.client_read(client_id), resources.uri_read(RESOURCE)], many)
            assert rawsql.read_all(*many) == direct
        assert len(seen) == 1
        assert [row.name for row in direct] == ["Aardvark", "Acme", "Globex"]
        # A user with no hub: no rows (not one row of NULLs).
        rawsql.read_ahead([store.client_read(client_id)], store.hubs_and_grants_read(10**6, client_id, RESOURCE))
        assert rawsql.read_all(*store.hubs_and_grants_read(10**6, client_id, RESOURCE)) == []


def test_rows_read_as_values_are_detached_until_the_request_has_a_session(app, world, register):
    """store.read_as_values: with no session, an adopted row is left detached (its columns read as
    loaded, a relationship refuses to load rather than answer empty, and no session is made);
    once the request has a session, rows are adopted into it as before."""
    import pytest
    from sqlalchemy.orm.attributes import instance_state
    from sqlalchemy.orm.exc import DetachedInstanceError

    client_id = register()["client_id"]
    with app.test_request_context():
        store.read_as_values()
        client = store.get_client(client_id)
        user = store.get_session_user(world.alice_id, "no-such-session")
        assert not db.session.registry.has()
        assert (client.client_id, user.email) == (client_id, "alice@example.com")
        state = instance_state(user)
        assert state.detached and state.key == User.__mapper__.identity_key_from_primary_key((world.alice_id,))
        assert not rawsql.in_transaction() and not db.session.registry.has()
        with pytest.raises(DetachedInstanceError):
            user.memberships  # noqa: B018
        db.session()  # the request now has a session: rows are adopted into it
        adopted = store.get_session_user(world.alice_id, "no-such-session")
        assert adopted is not user and instance_state(adopted).persistent
        assert store.get_session_user(world.alice_id, "no-such-session") is adopted
