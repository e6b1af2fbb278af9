"""A refresh's rotation is not announced: the rotated pair's access token ends within
INTROSPECTION_CACHE_SECONDS in other workers, at once in the one that rotated it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

Written by hand; PostgreSQL only, as 0011. Every refresh rotates its token and ends the rotated
pair's access token (one live access token per family). 0011's trigger announced that end, so
every refresh sent a NOTIFY: PostgreSQL then serialises the committing transactions on its
notification lock, and every worker's listening thread woke for it. Measured with the peer
benchmark's refresh phase (docs/benchmarks.md): 640-660 refreshes/s announced, 890-910 not.

The end of a rotated pair's access token is housekeeping, not a revocation: the client that
rotated it holds the new pair and the old access token was its own. It still ends at once in the
worker that made the refresh (authserver/changes.py reads the worker's own statements) and in
every other worker within INTROSPECTION_CACHE_SECONDS, the cache's bound. Everything else is
announced as before: a revocation (revoked_at, access_revoked_at outside a rotation), reuse of a
rotated refresh token (which revokes the grant), a narrowed scope, a shortened lifetime.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

#: tokens' columns whose UPDATE is announced (authserver/changes.py WATCHED['tokens']) ...
TOKEN_COLUMNS = ('revoked_at', 'access_revoked_at', 'scope', 'access_expires_at', 'issued_at', 'access_token_hash',
                 'grant_id', 'client_pk')
#: ... except this one when the same UPDATE rotates the token (rotated_at set where it was NULL).
ENDED_BY_ROTATION = 'access_revoked_at'
ROTATION = 'OLD.rotated_at IS NULL AND NEW.rotated_at IS NOT NULL'


def _changed(column: str) -> str:
    return f"OLD.{column} IS DISTINCT FROM NEW.{column}"


def _trigger(when: str) -> None:
    op.execute("DROP TRIGGER IF EXISTS tokens_changed ON tokens")
    op.execute(f"CREATE TRIGGER tokens_changed AFTER UPDATE ON tokens FOR EACH ROW WHEN ({when}) "
               f"EXECUTE FUNCTION authserver_token_changed()")


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    others = " OR ".join(_changed(c) for c in TOKEN_COLUMNS if c != ENDED_BY_ROTATION)
    _trigger(f"{others} OR ({_changed(ENDED_BY_ROTATION)} AND NOT ({ROTATION}))")


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    _trigger(" OR ".join(_changed(c) for c in TOKEN_COLUMNS))
