"""Every query and mutation the protocol core needs. Functions flush, never commit: the view does.

Single use is enforced by conditional UPDATEs checked by rowcount (``consume_*``), which are
atomic on PostgreSQL under concurrency: the losing transaction blocks on the row lock, then
re-evaluates the WHERE clause against the committed row and updates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from flask import current_app, g
from sqlalchemy import Boolean, bindparam, case, cast, delete, func, insert, null, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload
from sqlalchemy.orm.attributes import instance_state

from . import audit, rawsql
from .extensions import db
from .models import (
    AuditEvent,
    AuthorizationCode,
    Client,
    EndedSession,
    Grant,
    Hub,
    Membership,
    RemoteDocument,
    ResourceServer,
    Token,
    UsedAssertion,
    User,
)
from .models.clients import without_loopback_port
from .timeutil import to_epoch, utcnow

# Don't rewrite last-used timestamps more often than this (they are for display, not security).
TOUCH_INTERVAL = timedelta(seconds=60)

# The hot-path lookups, built once with a bound parameter: building a statement costs more than
# running it (about 1.0 ms against 0.3 ms for the introspection join on SQLite), and these run on
# every token request and every introspection.
_CLIENT_BY_ID = rawsql.Statement(
    select(*Client.__table__.columns).where(Client.client_id == bindparam("client_id"))
)
_TOKEN_BY_ACCESS_HASH = select(Token).where(Token.access_token_hash == bindparam("token_hash"))
# A refresh reads the token's grant, user and hub at once: load them in the same round trip.
_TOKEN_BY_REFRESH_HASH = (
    select(Token)
    .where(Token.refresh_token_hash == bindparam("token_hash"))
    .options(joinedload(Token.grant).joinedload(Grant.user), joinedload(Token.grant).joinedload(Grant.hub))
)
# An introspection reads plain columns (no ORM entities) of the token, its grant, user, hub, client
# and the user's live membership, for one resource server (the caller, whose URI is the audience):
# a token of another audience finds no row. Indexed by the unique access-token hash.
_INTROSPECTION_ROW = rawsql.Statement(
    select(
        Token.scope, Token.issued_at, Token.access_expires_at, Token.revoked_at, Token.access_revoked_at,
        Grant.revoked_at.label("grant_revoked_at"), User.id.label("user_id"), User.disabled.label("user_disabled"),
        Hub.public_id.label("hub_public_id"), Membership.role, Membership.granted, Membership.denied,
        Client.client_id,
    )
    .join(Grant, Grant.id == Token.grant_id)
    .join(User, User.id == Grant.user_id)
    .join(Hub, Hub.id == Grant.hub_id)
    .join(Client, Client.id == Token.client_pk)
    .outerjoin(Membership, (Membership.user_id == Grant.user_id) & (Membership.hub_id == Grant.hub_id))
    .where(Token.access_token_hash == bindparam("token_hash"), Grant.resource_id == bindparam("resource_id"))
)


# The token endpoint reads a code or a refresh token with everything its exchange decides on: the
# grant's consent and state, the user's live membership, and the answer an identical retry gets
# (the sealed `replay` with its consumed_at / rotated_at; plain columns, one statement).
_EXCHANGE_GRANT_COLUMNS = (
    Grant.scope.label("grant_scope"), Grant.revoked_at.label("grant_revoked_at"), Grant.user_id, Grant.hub_id,
    Grant.resource_id, Grant.last_used_at.label("grant_last_used_at"), User.disabled.label("user_disabled"),
    Hub.public_id.label("hub_public_id"), Membership.role, Membership.granted, Membership.denied,
    ResourceServer.uri.label("resource_uri"), ResourceServer.token_format,
)


def _exchange_select(*columns, key):
    grant_id = columns[0].table.c.grant_id
    return (
        select(*columns, *_EXCHANGE_GRANT_COLUMNS)
        .join(Grant, Grant.id == grant_id)
        .join(User, User.id == Grant.user_id)
        .join(Hub, Hub.id == Grant.hub_id)
        .join(ResourceServer, ResourceServer.id == Grant.resource_id)
        .outerjoin(Membership, (Membership.user_id == Grant.user_id) & (Membership.hub_id == Grant.hub_id))
        .where(key == bindparam("hash"))
    )


def _exchange_read(*columns, key):
    return rawsql.Statement(_exchange_select(*columns, key=key))


_CODE_COLUMNS = (
    AuthorizationCode.id, AuthorizationCode.grant_id, AuthorizationCode.code_hash, AuthorizationCode.client_pk,
    AuthorizationCode.redirect_uri, AuthorizationCode.redirect_uri_sent, AuthorizationCode.scope,
    AuthorizationCode.code_challenge, AuthorizationCode.code_challenge_method, AuthorizationCode.expires_at,
    AuthorizationCode.consumed_at, AuthorizationCode.replay,
    # When the person approved at the authorization endpoint: the family's auth_time.
    AuthorizationCode.created_at.label("auth_time"),
)
_CODE_FOR_EXCHANGE = _exchange_read(*_CODE_COLUMNS, key=AuthorizationCode.code_hash)
_REFRESH_COLUMNS = (
    Token.id, Token.grant_id, Token.code_id, Token.client_pk, Token.refresh_token_hash, Token.scope,
    Token.authorized_scope, Token.rotated_at, Token.revoked_at, Token.refresh_expires_at, Token.replay,
    Token.auth_time,
    # The rotation ends this access token: its cached answer is forgotten (changes.statement_ran).
    Token.access_token_hash,
)
_REFRESH_FOR_EXCHANGE = _exchange_read(*_REFRESH_COLUMNS, key=Token.refresh_token_hash)
#: The client's columns a refresh in the WSGI lane authenticates with (oauth/grants.py LeanRefresh).
CLIENT_AUTH_COLUMNS = ("id", "client_id", "client_secret_hash", "client_metadata", "registration", "last_used_at")
# The lane's refresh reads the client and its refresh token with everything the exchange decides on
# in one statement, outside any transaction: the client's row, and the token's (NULL columns when
# the hash is unknown or the token is another client's).
def _with_client(columns, key, name: str) -> rawsql.Statement:
    credential = _exchange_select(*columns, key=key).subquery(name)
    return rawsql.Statement(
        select(*(Client.__table__.c[c].label("client__" + c) for c in CLIENT_AUTH_COLUMNS), *credential.c)
        .select_from(Client.__table__.outerjoin(credential, credential.c.client_pk == Client.id))
        .where(Client.client_id == bindparam("client_id"))
    )


_CLIENT_AND_REFRESH = _with_client(_REFRESH_COLUMNS, Token.refresh_token_hash, "refresh")
# The lane's code exchange reads the client and the code the same way.
_CLIENT_AND_CODE = _with_client(_CODE_COLUMNS, AuthorizationCode.code_hash, "code")
# Single use and the answer a retry gets in one statement: the winner's answer is committed with
# the consumption itself, so whoever finds the row consumed also finds the answer on it.
_CONSUME = (
    update(AuthorizationCode)
    .where(AuthorizationCode.id == bindparam("id"), AuthorizationCode.consumed_at.is_(None),
           AuthorizationCode.expires_at > bindparam("now"))
    .values(consumed_at=bindparam("now"), replay=bindparam("replay"))
)
_CONSUME_CODE = rawsql.Statement(_CONSUME)
# Rotation, the end of the rotated pair's access token (one live access token per family) and the
# retry's answer in one statement: the conditional WHERE makes it single use, the row lock settles
# races.
_ROTATE = (
    update(Token)
    .where(Token.id == bindparam("id"), Token.rotated_at.is_(None), Token.revoked_at.is_(None))
    .values(rotated_at=bindparam("now"), access_revoked_at=func.coalesce(Token.access_revoked_at, bindparam("now")),
            replay=bindparam("replay"))
)
_CONSUME_REFRESH = rawsql.Statement(_ROTATE)
_TOKEN_COLUMNS = ("grant_id", "code_id", "parent_id", "client_pk", "access_token_hash", "refresh_token_hash", "scope",
                  "authorized_scope", "issued_at", "access_expires_at", "refresh_expires_at", "auth_time")
_INSERT_TOKEN = rawsql.insert_into(Token, *_TOKEN_COLUMNS)
_TOUCH_GRANT = rawsql.Statement(update(Grant).where(Grant.id == bindparam("id")).values(last_used_at=bindparam("now")))
# A client's row is rewritten as the ORM rewrites it (touch_usage): updated_at with it.
_TOUCH_CLIENT = rawsql.Statement(
    update(Client).where(Client.id == bindparam("id")).values(last_used_at=bindparam("now"), updated_at=bindparam("now"))
)


def _typed(table, name: str, parameter: str | None = None):
    """A bound parameter named `parameter` (the column's name by default) and cast as the column
    (PostgreSQL types a bare parameter in a SELECT list as text, which an INSERT ... SELECT cannot
    store in a timestamp or integer)."""
    column_type = table.c[name].type
    return cast(bindparam(parameter or name, type_=column_type), column_type)


def _issuing_statement(consume, name: str, from_consumed: str) -> rawsql.Statement:
    """A token request's whole write as one PostgreSQL statement (data-modifying CTEs, run in
    autocommit: one round trip, no BEGIN or COMMIT). `consume` is the conditional UPDATE that makes
    the code or refresh token single use (_CONSUME_CODE's, _CONSUME_REFRESH's): the row lock
    settles racing requests, the loser's UPDATE matches nothing, and every other part only inserts
    or updates FROM the consumed row (whose id is the new pair's `from_consumed` column), so the
    loser writes nothing. Returns the consumed row's id, or no row."""
    consumed = consume.returning(consume.table.c.id).cte(name)
    tokens = Token.__table__
    new_pair = insert(tokens).from_select(
        _TOKEN_COLUMNS,
        select(*(consumed.c.id if column == from_consumed else _typed(tokens, column) for column in _TOKEN_COLUMNS)),
    ).cte("new_pair")
    new_event = _event_from(consumed, "").cte("new_event")
    consumed_now = select(consumed.c.id).exists()
    touch_grant = (
        update(Grant).where(Grant.id == bindparam("grant_id"), bindparam("touch_grant", type_=Boolean), consumed_now)
        .values(last_used_at=bindparam("now")).cte("touch_grant")
    )
    touch_client = (
        update(Client).where(Client.id == bindparam("client_pk"), bindparam("touch_client", type_=Boolean),
                             consumed_now)
        .values(last_used_at=bindparam("now"), updated_at=bindparam("now")).cte("touch_client")
    )
    return rawsql.Statement(select(consumed.c.id).add_cte(new_pair, new_event, touch_grant, touch_client))


# Registration runs on every connection of a hosted AI client, and is answered from these raw
# statements on the session's connection (rawsql): the ORM's SELECT, flush and reload cost several
# times as much. The hand-over finds the oldest client (lowest id) deduplicated under the key and
# revokes its registration token in one conditional UPDATE (see revoke_client_management); on
# PostgreSQL, once an earlier hand-over did, the client is only read (_registration_statement).
_OLDEST_DEDUPLICATED = (
    select(func.min(Client.id))
    .where(Client.dedupe_key == bindparam("key"), Client.registration == bindparam("registration"))
    .scalar_subquery()
)
_HANDED_COLUMNS = ("client_id", "client_id_issued_at", "client_metadata")


def _hand_over(client_id):
    """The conditional UPDATE handing the client with id `client_id` over (its registration token
    revoked) while it is still deduplicated under the key; returns _HANDED_COLUMNS."""
    return (
        update(Client)
        .where(Client.id == client_id, Client.dedupe_key == bindparam("key"))
        .values(registration_access_token_hash=null(), updated_at=bindparam("now"))
        .returning(*(Client.__table__.c[name] for name in _HANDED_COLUMNS))
    )


def _handed(source):
    """_HANDED_COLUMNS of `source` (a CTE of clients)."""
    return select(*(source.c[name] for name in _HANDED_COLUMNS))


_HAND_OVER_DEDUPLICATED = rawsql.Statement(_hand_over(_OLDEST_DEDUPLICATED))
# The client _HAND_OVER_DEDUPLICATED would match, with whether anyone still manages it (_REGISTRATION's).
_DEDUPLICATED = (
    select(Client.id, *(Client.__table__.c[name] for name in _HANDED_COLUMNS),
           Client.registration_access_token_hash.is_(None).label("handed_over"))
    .where(Client.id == _OLDEST_DEDUPLICATED, Client.dedupe_key == bindparam("key"))
)
_CLIENT_COLUMNS = ("client_id", "client_secret_hash", "registration_access_token_hash", "client_metadata",
                   "registration", "client_id_issued_at", "dedupe_key", "created_at", "updated_at")
_INSERT_CLIENT = rawsql.insert_into(Client, *_CLIENT_COLUMNS)
_EVENT_COLUMNS = ("created_at", "event", "user_id", "hub_id", "client_id", "ip", "request_id", "detail")


def _event_from(source, prefix: str, **from_source):
    """INSERT of an audit event (audit.event_values' columns, as parameters named `prefix` + column,
    or the `from_source` columns) for each row of `source`: written only when the statement whose
    RETURNING `source` is wrote a row."""
    events = AuditEvent.__table__
    return insert(events).from_select(
        _EVENT_COLUMNS,
        select(*(from_source[name] if name in from_source else
                 cast(bindparam(prefix + name, type_=events.c[name].type), events.c[name].type)
                 for name in _EVENT_COLUMNS)).select_from(source),
    )


#: The columns both of a registration's possible audit events take from the one request (its
#: origin and time, audit.event_values with no user or hub), bound once for both (_REGISTRATION).
_REGISTRATION_EVENT_SHARED = {"created_at": "now", "ip": "ip", "request_id": "request_id"}


def _registration_statement():
    """A registration's whole write as one PostgreSQL statement (data-modifying CTEs, run in
    autocommit): the hand-over of an identical deduplicated client or, when there is none, the new
    client's INSERT; and the audit event of whichever happened. Returns the handed-over client's
    row, or no row when the new client was inserted.

    The hand-over is _HAND_OVER_DEDUPLICATED's conditional UPDATE (_hand_over), unchanged, while the client
    still has a registration token; once it has none (every hand-over after the first) the client
    is only read. Rewriting that row made every identical registration wait for the previous one's
    row lock until its commit was on disk: registrations of one hosted client went one at a time
    (the peer benchmark's `dcr` phase spent most of its database time waiting for that lock).
    Racing hand-overs of a client that still has its token both find its row, as before: the one
    that waits re-checks only that the row is the one deduplicated under the key; a client that
    left deduplication meanwhile (update_managed_client) is not handed out.

    What several parts share is one parameter (the time: the client's created_at and updated_at,
    the hand-over's updated_at, the event's created_at; the request's address and id; no user, no
    hub): about half the parameters, each one psycopg would dump and send."""
    candidate = _DEDUPLICATED.cte("candidate")
    handed = _hand_over(select(candidate.c.id).where(~candidate.c.handed_over).scalar_subquery()).cte("handed")
    given = union_all(_handed(handed), _handed(candidate).where(candidate.c.handed_over)).cte("given")
    clients = Client.__table__
    events = AuditEvent.__table__
    shared = {"created_at": "now", "updated_at": "now"}
    new_client = insert(clients).from_select(
        _CLIENT_COLUMNS,
        select(*(_typed(clients, name, shared.get(name)) for name in _CLIENT_COLUMNS)).where(
            ~select(given.c.client_id).exists()),
    ).returning(clients.c.client_id).cte("new_client")
    common = {**{name: _typed(events, name, parameter) for name, parameter in _REGISTRATION_EVENT_SHARED.items()},
              **{name: cast(null(), events.c[name].type) for name in ("user_id", "hub_id")}}
    reused = _event_from(given, "reused_", client_id=given.c.client_id, **common).cte("reused_event")
    registered = _event_from(new_client, "registered_", client_id=new_client.c.client_id, **common).cte(
        "registered_event")
    return rawsql.Statement(_handed(given).add_cte(new_client, reused, registered))


_ROTATION = _issuing_statement(_ROTATE, "rotated", "parent_id")
_REDEMPTION = _issuing_statement(_CONSUME, "redeemed", "code_id")
_REGISTRATION = _registration_statement()


# --- clients -------------------------------------------------------------------------------------
def get_client(client_id: str | None) -> Client | None:
    """The client, as a row of the session (changes to it are flushed like any other). Every token
    request and authorization request starts here, so it is read as plain columns and adopted into
    the session as if the ORM had loaded it (about a fifth of the ORM query's CPU), outside any
    transaction unless the request has begun one (rawsql.read)."""
    read = client_read(client_id)
    if read is None:
        return None
    row = rawsql.read(*read)
    return adopt(Client, row) if row is not None else None


def client_read(client_id: str | None) -> tuple[rawsql.Statement, dict] | None:
    """The read get_client makes for `client_id` (for rawsql.read_ahead); None when it makes none."""
    if not client_id or not isinstance(client_id, str) or len(client_id) > 2000:
        return None
    return _CLIENT_BY_ID, {"client_id": client_id}


def adopt(model, row, exclude: tuple[str, ...] = ()):
    """The session's object for a row read with plain columns (its table's, and the `exclude`d
    extras): the one already in the session, or a new one marked as loaded
    (sqlalchemy.orm.make_transient_to_detached), then added. In a request that reads its rows as
    values (read_as_values) and has no session, the new one is left detached instead."""
    mapper = model.__mapper__
    key = mapper.identity_key_from_primary_key((row.id,))
    session = db.session() if db.session.registry.has() or not g.get(_AS_VALUES) else None
    if session is not None:
        existing = session.identity_map.get(key)
        if existing is not None:
            return existing
    values = row._asdict()
    for name in exclude:
        values.pop(name)
    # As the ORM's own loading does: the column values go straight into the instance's dict (the
    # constructor would set them one by one through attribute events, about two thirds of the
    # cost), then the state is marked loaded with that identity.
    instance = mapper.class_manager.new_instance()
    instance.__dict__.update(values)
    state = instance_state(instance)
    # make_transient_to_detached, with what it computes from the state given: the identity key
    # (just looked up) and the attributes the row does not hold (the same for every row of a
    # shape, _unloaded). Then Session.add less its save-update cascade, which walks every
    # relationship for related objects to add: an instance holding column values only has none.
    # Together about half of an adoption's cost, three adoptions per authorization request
    # (tests/oauth/test_authorization_response.py compares the states with the ORM's own).
    state.key = key
    state._commit_all(state.dict)
    state._expire_attributes(state.dict, _unloaded(mapper, tuple(values)))
    if session is not None:
        state._orphaned_outside_of_session = False
        session._save_or_update_impl(state)
    return instance


#: Set in g by read_as_values.
_AS_VALUES = "authserver.rows_as_values"


def read_as_values() -> None:
    """The rows this request adopts are values it only reads: while the request has no ORM session,
    adopt leaves them detached (loaded, in no session) rather than making a session to add them
    to. For the authorization endpoint (views/authorize.py), whose user, client and resource
    server are only read and whose writes go by id through rawsql, a signed-in request then makes
    no session at all: making one, adding three rows and closing it was about a tenth of its CPU.
    A detached row reads as an adopted one; loading a relationship from it raises
    (DetachedInstanceError), never answers empty; a change to it would not be flushed, so a view
    that changes one of its rows must not call this."""
    setattr(g, _AS_VALUES, True)


@lru_cache(maxsize=64)
def _unloaded(mapper, names: tuple[str, ...]) -> frozenset[str]:
    """The attributes an instance of `mapper` holding only `names` has not loaded
    (InstanceState.unloaded, computed once per row shape)."""
    return frozenset(mapper.class_manager).difference(names)


def get_client_by_registration_token(token_hash: str) -> Client | None:
    return db.session.scalar(select(Client).where(Client.registration_access_token_hash == token_hash))


def revoke_client_management(key: str):
    """Hand the deduplicated client registered under `key` to one more registrant: from now on
    nobody manages it (RFC 7592 would let its first registrant change or delete what every other
    registrant uses). Returns its client_id, client_id_issued_at and client_metadata, or None when
    there is no such client (then the caller registers a new one).

    Revoking its registration token is one conditional UPDATE: it matches only while the row is
    still deduplicated under `key`, so a client that left deduplication meanwhile (managed or
    deleted) is never handed out. Racing `update_managed_client` on PostgreSQL, the row lock makes
    exactly one of the two match: the second re-checks its WHERE clause against the row the first
    committed. (PostgreSQL's _REGISTRATION only reads a client whose token an earlier hand-over
    revoked; here, with one writer at a time, rewriting it makes nobody wait.)"""
    return rawsql.in_session().one(_HAND_OVER_DEDUPLICATED, {"key": key, "registration": "dynamic", "now": utcnow()})


def update_managed_client(client: Client, token_hash: str, metadata: dict, issued_at: int) -> bool:
    """RFC 7592 §2.2 update, only while `token_hash` is still the client's registration token.

    A managed client leaves deduplication at once (dedupe_key NULL), so no later registrant is
    handed a client whose metadata someone else controls. False when the token was revoked
    meanwhile (the client was handed to another registrant, or deleted)."""
    result = db.session.execute(
        update(Client)
        .where(Client.id == client.id, Client.registration_access_token_hash == token_hash)
        .values(client_metadata=metadata, client_id_issued_at=issued_at, dedupe_key=None, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.expire(client)
    return result.rowcount == 1


def delete_managed_client(client: Client, token_hash: str) -> bool:
    """RFC 7592 §2.3 delete, only while `token_hash` is still the client's registration token.

    The token is revoked first by a conditional UPDATE, which takes the row lock: a registration
    racing it either sees no row afterwards or has already revoked the token (then False)."""
    result = db.session.execute(
        update(Client)
        .where(Client.id == client.id, Client.registration_access_token_hash == token_hash)
        .values(registration_access_token_hash=None, dedupe_key=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.expire(client)
        return False
    delete_client(client)
    return True


def find_unused_clients(cutoff: datetime) -> list[Client]:
    """Dynamically registered and metadata-document clients not used since `cutoff` (or never,
    and created before it). A metadata-document client comes back from its document when used."""
    return list(
        db.session.scalars(
            select(Client).where(
                Client.registration.in_(("dynamic", "cimd")),
                ((Client.last_used_at.is_(None)) & (Client.created_at < cutoff)) | (Client.last_used_at < cutoff),
            )
        )
    )


def register_client(values: dict, key: str | None, reused_event: dict, registered_event: dict):
    """Register a client (RFC 7591): the client deduplicated under `key` handed to one more
    registrant (revoke_client_management), or else a new one, `values` (the columns of
    _INSERT_CLIENT, see save_registered_client); with the audit event of what happened
    (audit.event_values rows; client_id is filled in). Returns the handed-over client's
    client_id, client_id_issued_at and client_metadata, or None when the new client was inserted.

    On PostgreSQL one statement in autocommit (_REGISTRATION), committed before the view's own
    commit (which has nothing left to write); the two events are one request's, with no user or
    hub, so their time, address and request id are `registered_event`'s, also the client row's
    time (_REGISTRATION_EVENT_SHARED). Elsewhere the same statements in the request's
    transaction."""
    if rawsql.is_postgresql():
        shared = {parameter: registered_event[name] for name, parameter in _REGISTRATION_EVENT_SHARED.items()}
        params = {**values, "key": key, "registration": "dynamic", **shared,
                  "reused_event": reused_event["event"], "reused_detail": reused_event["detail"],
                  "registered_event": registered_event["event"], "registered_detail": registered_event["detail"]}
        with rawsql.connection(autocommit=True) as conn:
            return conn.one(_REGISTRATION, params)
    existing = revoke_client_management(key) if key is not None else None
    if existing is not None:
        event = {**reused_event, "client_id": existing.client_id}
    else:
        save_registered_client(values)
        event = {**registered_event, "client_id": values["client_id"]}
    rawsql.in_session().execute(audit.INSERT_EVENT, event).close()
    return existing


def save_registered_client(values: dict) -> None:
    """Insert a dynamically registered client (RFC 7591) in the request's transaction; `values`
    are the columns of _INSERT_CLIENT. Nothing reads the row back: the registration response is
    built from what was inserted."""
    now = utcnow()
    rawsql.in_session().execute(_INSERT_CLIENT, {**values, "created_at": now, "updated_at": now}).close()


def save_client(client: Client) -> Client:
    db.session.add(client)
    db.session.flush()
    return client


def delete_client(client: Client) -> None:
    """Delete a client and, by cascade, its grants, codes and tokens."""
    revoke_client_grants(client)
    db.session.delete(client)
    db.session.flush()


def client_names(client_ids) -> dict[str, str]:
    """client_id -> the name people see, for the given ids (unknown ids are left out)."""
    ids = {c for c in client_ids if c}
    if not ids:
        return {}
    return {c.client_id: c.client_name for c in db.session.scalars(select(Client).where(Client.client_id.in_(ids)))}


def find_clients() -> list[Client]:
    return list(db.session.scalars(select(Client).order_by(Client.id)))


def _stale(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether a last-used time is worth rewriting (at most once per TOUCH_INTERVAL)."""
    return last_used_at is None or now - last_used_at > TOUCH_INTERVAL


def _touch(row, now: datetime) -> None:
    if _stale(row.last_used_at, now):
        row.last_used_at = now


def touch(row) -> None:
    """Mark a row with a `last_used_at` (a client, an admin credential) used now, when stale."""
    _touch(row, utcnow())
    db.session.flush()


def add_unless_present(row) -> bool:
    """Insert `row` in a savepoint; False when its unique key is taken already (by this or any
    other instance: the database's unique index decides, so single use holds across instances)."""
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return False
    return True


def _get_or_create(model, key_column, key, **values):
    """The row whose `key_column` is `key`, created with `values` when missing. Instances racing
    to create it are settled by the unique index: the loser reads the winner's row."""
    row = db.session.scalar(select(model).where(key_column == key))
    if row is None:
        row = model(**{key_column.key: key}, **values)
        if not add_unless_present(row):
            row = db.session.scalar(select(model).where(key_column == key))
    return row


# --- metadata documents (oauth/cimd.py) ----------------------------------------------------------
def get_remote_document(url: str) -> RemoteDocument | None:
    """The cached copy of a fetched document (a client's metadata document, a JWKS), fresh or not."""
    return db.session.scalar(select(RemoteDocument).where(RemoteDocument.url == url))


def save_remote_document(url: str, cached: RemoteDocument | None, **values) -> None:
    """Cache a document fetched from `url`: `cached` (the row get_remote_document found) updated,
    else a new row (or, when another instance stored one first, that row: ours is as new)."""
    row = cached or _get_or_create(RemoteDocument, RemoteDocument.url, url, **values)
    for key, value in values.items():
        setattr(row, key, value)
    db.session.flush()


def save_document_client(client_id: str, metadata: dict) -> Client:
    """The Client row mirroring a metadata document's client: created on first use, its metadata
    replaced when the document changed."""
    client = _get_or_create(Client, Client.client_id, client_id, registration="cimd", client_metadata=metadata,
                            client_id_issued_at=to_epoch(utcnow()))
    if client.client_metadata != metadata:
        client.client_metadata = metadata
        db.session.flush()
    return client


# --- sessions ------------------------------------------------------------------------------------
def end_session(sid_hash: str, expires_at: datetime) -> None:
    """Record a signed-out session; signing out twice (two tabs, two instances) is harmless."""
    add_unless_present(EndedSession(sid_hash=sid_hash, expires_at=expires_at))


# The signed-in user and whether their session was ended, in one round trip: every page and every
# authorization request of a signed-in person starts with this.
_SESSION_USER = rawsql.Statement(
    select(
        *User.__table__.columns,
        select(EndedSession.id).where(EndedSession.sid_hash == bindparam("sid_hash")).exists().label("ended"),
    ).where(User.id == bindparam("user_id"))
)


def get_session_user(user_id: int, sid_hash: str) -> User | None:
    """The user of a session, or None when there is no such user or the session was ended."""
    row = rawsql.read(*session_user_read(user_id, sid_hash))
    if row is None or row.ended:
        return None
    return adopt(User, row, exclude=("ended",))


def session_user_read(user_id: int, sid_hash: str) -> tuple[rawsql.Statement, dict]:
    """The read get_session_user makes (for rawsql.read_ahead)."""
    return _SESSION_USER, {"user_id": user_id, "sid_hash": sid_hash}


# --- grants --------------------------------------------------------------------------------------
def _installation(uri: str) -> str:
    """A redirect URI as an installation key: loopback ports vary per run (RFC 8252 §7.3)."""
    return without_loopback_port(uri) or uri


def _same_installation(approved: str, redirect_uri: str) -> bool:
    """A grant belongs to one installation: the redirect URI the person approved, loopback ports
    aside. A redirect URI the person never approved is a new installation, for every kind of
    client: a registered client's URIs can change (RFC 7592), and consent given for one place
    must not send codes to another."""
    return _installation(approved) == _installation(redirect_uri)


# The consent page, the decision and remembered consent read in one statement, outside any
# transaction: each of the user's hubs with their membership, and the user's live grants to one
# (client, resource) in that hub (one row per grant; NULL grant columns for a hub without one).
# Plain columns, no ORM entities: building those cost more than the round trip. The client and
# the resource are named by their unique client_id and URI, as the authorization request names
# them, so that the authorization endpoint can read this ahead with them (rawsql.read_ahead).
_HUBS_AND_GRANTS = rawsql.Statement(
    select(
        Hub.id, Hub.public_id, Hub.name, Membership.role, Membership.granted, Membership.denied,
        Grant.id.label("grant_id"), Grant.scope, Grant.redirect_uri, Grant.created_at, Grant.last_used_at,
    )
    .select_from(Membership)
    .join(Hub, Hub.id == Membership.hub_id)
    .outerjoin(Grant, (Grant.user_id == Membership.user_id) & (Grant.hub_id == Membership.hub_id)
               & (Grant.client_pk == select(Client.id).where(Client.client_id == bindparam("grants_client_id"))
                  .scalar_subquery())
               & (Grant.resource_id == select(ResourceServer.id).where(ResourceServer.uri == bindparam("grants_uri"))
                  .scalar_subquery())
               & Grant.revoked_at.is_(None))
    .where(Membership.user_id == bindparam("grants_user_id"))
    .order_by(Hub.name, Hub.id, Grant.id)
)


@dataclass(frozen=True)
class HubMembership:
    """One of the user's hubs (id, public_id, name: what the consent page shows) with the user's
    membership there (role, granted, denied: what accounts.permissions_from reads)."""

    id: int
    public_id: int
    name: str
    role: str
    granted: list | None
    denied: list | None


@dataclass(frozen=True)
class LiveGrant:
    """A live grant of the user to one client, resource and installation, in `hub` (still theirs)."""

    id: int
    hub: HubMembership
    scope: str
    redirect_uri: str
    created_at: datetime
    last_used_at: datetime | None

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scope.split())


def _recency(grant: LiveGrant) -> datetime:
    return grant.last_used_at or grant.created_at


def find_hubs_and_grants(user: User, client: Client, resource: ResourceServer,
                         redirect_uri: str) -> tuple[list[HubMembership], list[LiveGrant]]:
    """The user's hubs with their memberships (by hub name), and the user's live grants to this
    client (installation) for this resource in those hubs, most recently used first (ties: oldest
    first). A grant in a hub the user has left is not among them: it can be neither used nor
    shown. One statement, outside any transaction unless the request has begun one."""
    rows = rawsql.read_all(*hubs_and_grants_read(user.id, client.client_id, resource.uri))
    hubs: dict[int, HubMembership] = {}
    live: list[LiveGrant] = []
    for row in rows:
        hub = hubs.get(row.id)
        if hub is None:
            hub = hubs[row.id] = HubMembership(row.id, row.public_id, row.name, row.role, row.granted, row.denied)
        if row.grant_id is not None and _same_installation(row.redirect_uri, redirect_uri):
            live.append(LiveGrant(row.grant_id, hub, row.scope, row.redirect_uri, row.created_at, row.last_used_at))
    live.sort(key=lambda grant: grant.id)
    live.sort(key=_recency, reverse=True)  # a stable sort: ties stay oldest first
    return list(hubs.values()), live


def hubs_and_grants_read(user_id: int, client_id: str, uri: str) -> tuple[rawsql.Statement, dict]:
    """The read find_hubs_and_grants makes for the user, the client's client_id and the resource
    server's canonical URI (for rawsql.read_ahead)."""
    return _HUBS_AND_GRANTS, {"grants_user_id": user_id, "grants_client_id": client_id, "grants_uri": uri}


@dataclass(frozen=True)
class GrantRecord:
    """What issuing a code records on its grant, written with the code (save_authorization_code):
    a new grant (`id` None) of `scope`; or grant `id`, its scope rewritten to `scope` (None: kept)
    and its last-used time rewritten when `touch`."""

    id: int | None
    scope: str | None = None
    touch: bool = False


def record_grant(live: list[LiveGrant], hub: HubMembership, scope: str) -> GrantRecord:
    """Consent for `hub` and `scope`, as save_authorization_code will record it. Re-authorizing the
    same (user, hub, client, resource, installation) replaces the scopes of the existing grant; its
    earlier tokens keep their own (narrower or equal) scopes. Another redirect URI is another
    installation, so another grant: the grant keeps the redirect URI the person approved."""
    grant = next((g for g in live if g.hub.id == hub.id), None)
    if grant is None:
        return GrantRecord(None, scope)
    return use_grant(grant, live, scope=scope if grant.scope != scope else None)


def use_grant(grant: LiveGrant, live: list[LiveGrant], scope: str | None = None) -> GrantRecord:
    """A grant marked used now (and its scope rewritten to `scope` unless None). Its last-used time
    is shown to people and picks the hub a remembered decision uses (the most recently used of
    `live`, the installation's live grants, in the order find_hubs_and_grants gives): it is not
    rewritten while under TOUCH_INTERVAL old and already first, when rewriting it would change
    neither what is shown (to the minute) nor which grant is first."""
    return GrantRecord(grant.id, scope, _stale(grant.last_used_at, utcnow()) or live[0] is not grant)


def find_user_grants(user: User) -> list[Grant]:
    """Every live grant of the user (the connected-apps page, the admin API), newest first, each
    with its hub, client and resource loaded in the same round trip."""
    return list(
        db.session.scalars(
            select(Grant)
            .where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
            .options(joinedload(Grant.hub), joinedload(Grant.client), joinedload(Grant.resource))
            .order_by(Grant.created_at.desc(), Grant.id.desc())
        )
    )


def get_user_grant(user: User, grant_id: int | str) -> Grant | None:
    """The user's grant with this id (revoked or not), or None; another user's grant is None."""
    try:
        grant_id = int(grant_id)
    except (TypeError, ValueError):
        return None
    if not 0 < grant_id < 2**31:  # beyond a 32-bit id: no such grant (and no database error)
        return None
    return db.session.scalar(select(Grant).where(Grant.id == grant_id, Grant.user_id == user.id))


def revoke_grant(grant: Grant, reason: str = "user") -> None:
    """Revoke a grant and every token issued under it, at once."""
    audit.record("grant.revoked", user=grant.user_id, hub=grant.hub, client=grant.client, reason=reason)
    now = utcnow()
    db.session.execute(
        update(Grant).where(Grant.id == grant.id, Grant.revoked_at.is_(None)).values(revoked_at=now)
    )
    db.session.execute(
        update(Token).where(Token.grant_id == grant.id, Token.revoked_at.is_(None)).values(revoked_at=now)
    )
    db.session.flush()
    db.session.expire(grant)


def revoke_user_grants(user: User) -> int:
    """Revoke every live grant of a user and every token issued under them, at once (the user was
    disabled); how many grants that was."""
    now = utcnow()
    live = select(Grant.id).where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
    db.session.execute(
        update(Token).where(Token.grant_id.in_(live.scalar_subquery()), Token.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    )
    revoked = db.session.execute(
        update(Grant).where(Grant.user_id == user.id, Grant.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)
    ).rowcount
    return revoked


def revoke_client_grants(client: Client) -> None:
    now = utcnow()
    db.session.execute(
        update(Grant).where(Grant.client_pk == client.id, Grant.revoked_at.is_(None)).values(revoked_at=now)
    )
    db.session.execute(
        update(Token).where(Token.client_pk == client.id, Token.revoked_at.is_(None)).values(revoked_at=now)
    )


# --- authorization codes -------------------------------------------------------------------------
# A plain INSERT on the session's connection (in the request's transaction): codes are inserted
# once, never read back in the request that issues them, and an ORM object and its flush cost
# several times as much on every authorization.
_CODE_INSERT_COLUMNS = ("code_hash", "grant_id", "client_pk", "redirect_uri", "redirect_uri_sent", "scope",
                        "code_challenge", "code_challenge_method", "created_at", "expires_at")
_INSERT_CODE = rawsql.insert_into(AuthorizationCode, *_CODE_INSERT_COLUMNS)


# A new grant, written with its first code: the code's client and redirect URI, `grant_scope`, used
# `now`. In the PostgreSQL statement (casts, for INSERT ... SELECT) only when `insert_grant`, so
# that one statement serves every decision; elsewhere a plain INSERT (SQLite would turn a cast
# timestamp into a number).
_GRANT_VALUES = {"user_id": "user_id", "hub_id": "hub_id", "client_pk": "client_pk", "resource_id": "resource_id",
                 "scope": "grant_scope", "redirect_uri": "redirect_uri", "created_at": "now", "last_used_at": "now"}


def _grant_value(column: str, typed: bool):
    column_type = Grant.__table__.c[column].type
    parameter = bindparam(_GRANT_VALUES[column], type_=column_type)
    return cast(parameter, column_type) if typed else parameter


_NEW_GRANT = insert(Grant.__table__).from_select(
    tuple(_GRANT_VALUES), select(*(_grant_value(c, True) for c in _GRANT_VALUES)).where(
        bindparam("insert_grant", type_=Boolean)),
).returning(Grant.id)
_INSERT_GRANT = rawsql.Statement(
    insert(Grant.__table__).values({c: _grant_value(c, False) for c in _GRANT_VALUES}).returning(Grant.id))
# An existing grant's new scope (grant_scope; NULL keeps it) and last-used time (when touch_grant).
_CHANGE_GRANT = (
    update(Grant)
    .where(Grant.id == bindparam("grant_id"), bindparam("change_grant", type_=Boolean))
    .values(scope=func.coalesce(bindparam("grant_scope", type_=Grant.scope.type), Grant.scope),
            last_used_at=case((bindparam("touch_grant", type_=Boolean), bindparam("now", type_=Grant.last_used_at.type)),
                              else_=Grant.last_used_at))
)
_UPDATE_GRANT = rawsql.Statement(_CHANGE_GRANT)


def _code_statement() -> rawsql.Statement:
    """An authorization response's whole write as one PostgreSQL statement (data-modifying CTEs,
    run in autocommit: no BEGIN or COMMIT): the grant inserted or changed as its GrantRecord says,
    the code under it, and the audit event."""
    codes = AuthorizationCode.__table__
    new_grant = _NEW_GRANT.cte("new_grant")
    changed_grant = _CHANGE_GRANT.cte("changed_grant")
    grant_id = func.coalesce(select(new_grant.c.id).scalar_subquery(), _typed(codes, "grant_id"))
    new_code = insert(codes).from_select(
        _CODE_INSERT_COLUMNS,
        select(*(grant_id if name == "grant_id" else _typed(codes, name) for name in _CODE_INSERT_COLUMNS)),
    ).returning(codes.c.id).cte("new_code")
    new_event = _event_from(new_code, "event_").cte("new_event")
    return rawsql.Statement(select(new_code.c.id).add_cte(new_grant, changed_grant, new_event))


_ISSUE_CODE = _code_statement()


def save_authorization_code(code: dict, grant: GrantRecord, *, user_id: int, hub_id: int, resource_id: int,
                            event: dict) -> None:
    """Store a new code (`code`: _INSERT_CODE's columns but grant_id; its hash, never the code)
    under its grant, recording the grant as `grant` says (a new one for the user, hub, the code's
    client and resource and redirect URI; or a changed scope or last-used time), and the audit
    `event` (audit.event_row). On PostgreSQL, when the request has no work in its session, one
    statement in autocommit (_ISSUE_CODE); otherwise the same writes in the request's transaction
    (SQLite has no data-modifying CTEs), which the view commits."""
    params = {**code, "grant_id": grant.id, "grant_scope": grant.scope, "user_id": user_id, "hub_id": hub_id,
              "resource_id": resource_id, "now": code["created_at"], "insert_grant": grant.id is None,
              "change_grant": grant.id is not None and (grant.scope is not None or grant.touch),
              "touch_grant": grant.touch}
    if rawsql.is_postgresql() and not rawsql.in_transaction():
        with rawsql.connection(autocommit=True) as conn:
            conn.one(_ISSUE_CODE, {**params, **{"event_" + key: value for key, value in event.items()}})
        return
    db.session.flush()
    conn = rawsql.in_session()
    if params["insert_grant"]:
        params["grant_id"] = conn.one(_INSERT_GRANT, params).id
    elif params["change_grant"]:
        conn.execute(_UPDATE_GRANT, params).close()
    conn.execute(audit.INSERT_EVENT, event).close()
    conn.execute(_INSERT_CODE, {name: params[name] for name in _CODE_INSERT_COLUMNS}).close()


def get_code_for_exchange(code_hash: str):
    """The code with its grant's state and the user's live membership (one statement), or None."""
    return rawsql.in_session().one(_CODE_FOR_EXCHANGE, {"hash": code_hash})


def consume_authorization_code(code, replay: bytes | None) -> bool:
    """Mark the code used, keeping `replay` (the sealed answer) on it. True for exactly one
    caller, however many race."""
    cursor = rawsql.in_session().execute(_CONSUME_CODE, {"id": code.id, "now": utcnow(), "replay": replay})
    return cursor.rowcount == 1


def get_client_and_code(client_id: str, code_hash: str):
    """As get_client_and_refresh, for an authorization code (get_code_for_exchange's columns)."""
    if not client_id or len(client_id) > 2000:
        return None
    return rawsql.read_one(_CLIENT_AND_CODE, {"client_id": client_id, "hash": code_hash})


def redeem_code(code_id: int, replay: bytes | None, new_pair: dict, event: dict, *,
                client_last_used_at: datetime | None, grant_last_used_at: datetime | None) -> bool:
    """A code exchange's whole write, committed, as rotate_refresh_token's for a refresh: the code
    consumed (consume_authorization_code's conditional UPDATE), the new pair stored with the code
    as its lineage, the audit event, the last-used times."""
    return _issue(_CONSUME_CODE, _REDEMPTION, "code_id", code_id, replay, new_pair, event,
                  client_last_used_at, grant_last_used_at)


def revoke_code_family(code: AuthorizationCode) -> int:
    """Revoke every token descended from this code (RFC 6749 §4.1.2: a replayed code)."""
    result = db.session.execute(
        update(Token)
        .where(Token.code_id == code.id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


# --- tokens --------------------------------------------------------------------------------------
def save_token(**values) -> None:
    """Insert a token row (the columns of _INSERT_TOKEN) in the request's transaction."""
    rawsql.in_session().execute(_INSERT_TOKEN, values).close()


def get_token_by_access_hash(token_hash: str) -> Token | None:
    return db.session.scalar(_TOKEN_BY_ACCESS_HASH, {"token_hash": token_hash})


def get_token_by_refresh_hash(token_hash: str) -> Token | None:
    return db.session.scalar(_TOKEN_BY_REFRESH_HASH, {"token_hash": token_hash})


def get_refresh_for_exchange(token_hash: str):
    """The refresh token with its grant's state and the user's live membership (one statement)."""
    return rawsql.in_session().one(_REFRESH_FOR_EXCHANGE, {"hash": token_hash})


def consume_refresh_token(token, replay: bytes | None) -> bool:
    """Mark a refresh token rotated, end its access token and keep `replay` (the sealed answer)
    on it. True for exactly one caller, however many race."""
    cursor = rawsql.in_session().execute(_CONSUME_REFRESH, {"id": token.id, "now": utcnow(), "replay": replay},
                                         ends=token.access_token_hash)
    return cursor.rowcount == 1


def get_client_and_refresh(client_id: str, token_hash: str):
    """The client's authentication columns (named client__*) and the refresh token with its grant's
    state and the user's live membership, in one statement outside any transaction; None when there
    is no such client (the token's columns are NULL when it has no such refresh token)."""
    if not client_id or len(client_id) > 2000:
        return None
    return rawsql.read_one(_CLIENT_AND_REFRESH, {"client_id": client_id, "hash": token_hash})


def rotate_refresh_token(token_id: int, replay: bytes | None, new_pair: dict, event: dict, *,
                         client_last_used_at: datetime | None, grant_last_used_at: datetime | None,
                         access_token_hash: str) -> bool:
    """A refresh's whole write, committed: rotate the token (consume_refresh_token's conditional
    UPDATE), which ends its access token (`access_token_hash`, the rotated row's own), store
    `new_pair` (save_token's columns, parent_id excepted), the audit `event`
    (audit.event_values), and the client's and grant's last-used times as touch_usage rewrites
    them. True for exactly one caller, however many race; a caller that gets False wrote nothing.

    On PostgreSQL one statement in autocommit (_ROTATION); elsewhere the same statements in one
    transaction on a pooled connection (SQLite has no data-modifying CTEs)."""
    return _issue(_CONSUME_REFRESH, _ROTATION, "parent_id", token_id, replay, new_pair, event,
                  client_last_used_at, grant_last_used_at, ends=access_token_hash)


def _issue(consume: rawsql.Statement, write: rawsql.Statement, from_consumed: str, consumed_id: int,
           replay: bytes | None, new_pair: dict, event: dict, client_last_used_at: datetime | None,
           grant_last_used_at: datetime | None, ends: str | None = None) -> bool:
    """rotate_refresh_token and redeem_code: on PostgreSQL the one statement `write` in autocommit;
    elsewhere `consume` and the same writes in one transaction on a pooled connection (SQLite has
    no data-modifying CTEs). Last-used times are rewritten as touch_usage rewrites them. `ends`:
    the access token a rotation ends (changes.statement_ran)."""
    now = utcnow()
    touch_client, touch_grant = _stale(client_last_used_at, now), _stale(grant_last_used_at, now)
    if rawsql.is_postgresql():
        params = {**new_pair, **event, "id": consumed_id, "now": now, "replay": replay,
                  "touch_client": touch_client, "touch_grant": touch_grant}
        with rawsql.connection(autocommit=True) as conn:
            return conn.one(write, params, ends) is not None
    with rawsql.transaction() as conn:
        if conn.execute(consume, {"id": consumed_id, "now": now, "replay": replay}, ends).rowcount != 1:
            return False  # nothing written: the empty transaction is committed
        conn.execute(_INSERT_TOKEN, {**new_pair, from_consumed: consumed_id}).close()
        conn.execute(audit.INSERT_EVENT, event).close()
        if touch_grant:
            conn.execute(_TOUCH_GRANT, {"id": new_pair["grant_id"], "now": now}).close()
        if touch_client:
            conn.execute(_TOUCH_CLIENT, {"id": new_pair["client_pk"], "now": now}).close()
    return True


def revoke_access_token(token: Token) -> None:
    """End the access token only; its refresh token (if any) keeps working."""
    db.session.execute(
        update(Token)
        .where(Token.id == token.id, Token.access_revoked_at.is_(None))
        .values(access_revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def touch_usage(client: Client, grant_id: int, grant_last_used_at: datetime | None) -> None:
    """Record when a client and a grant were last used (for people to see), at most once a minute."""
    now = utcnow()
    _touch(client, now)
    if _stale(grant_last_used_at, now):
        rawsql.in_session().execute(_TOUCH_GRANT, {"id": grant_id, "now": now}).close()


def get_introspection_row(token_hash: str, resource_id: int):
    """Everything an introspection answer needs, in one statement outside any transaction, or None
    when no access token with this hash was issued for this resource server."""
    return rawsql.read_one(_INTROSPECTION_ROW, {"token_hash": token_hash, "resource_id": resource_id})


def purge_expired(before: datetime | None = None, limit: int | None = None) -> dict[str, int]:
    """Delete rows no longer needed: expired codes, token rows, client assertion jti records past
    expiry, and fetched documents past their stale limit; clear replay answers past the grace
    window; at most `limit` of each."""
    now = before or utcnow()
    expired = (
        ("authorization_codes", AuthorizationCode, AuthorizationCode.expires_at <= now - timedelta(days=1)),
        ("tokens", Token, (Token.access_expires_at <= now)
         & (Token.refresh_expires_at.is_(None) | (Token.refresh_expires_at <= now))),
        ("used_assertions", UsedAssertion, UsedAssertion.expires_at <= now),
        ("ended_sessions", EndedSession, EndedSession.expires_at <= now),
        ("remote_documents", RemoteDocument, RemoteDocument.stale_until <= now),
    )
    counts = {}
    for name, model, condition in expired:
        if limit is not None:
            # A bounded batch, so that a caller committing after each one never holds the locks of
            # a million-row DELETE (PostgreSQL and SQLite have no DELETE ... LIMIT; this is theirs).
            condition = model.id.in_(select(model.id).where(condition).limit(limit).scalar_subquery())
        counts[name] = db.session.execute(
            delete(model).where(condition).execution_options(synchronize_session=False)
        ).rowcount
    # A rotated token keeps its row (for reuse detection) until it expires, up to the refresh
    # lifetime; the answer sealed on it is only for retries within the grace window, so it is
    # dropped once that has passed rather than kept for weeks.
    grace = timedelta(seconds=max(0, int(current_app.config["REPLAY_GRACE_SECONDS"])))
    stale = Token.replay.is_not(None) & (Token.rotated_at <= now - grace)
    if limit is not None:
        stale = Token.id.in_(select(Token.id).where(stale).limit(limit).scalar_subquery())
    counts["replay_answers"] = db.session.execute(
        update(Token).where(stale).values(replay=None).execution_options(synchronize_session=False)
    ).rowcount
    return counts
