"""Change notifications: what an introspection answer depends on, changed, is announced.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

Written by hand; PostgreSQL only (SQLite has no notifications, and authserver caches no answers
there). Each worker remembers the rows behind repeated introspections for a few seconds
(authserver/changes.py); these triggers send NOTIFY authserver_changes, delivered when the
changing transaction commits, so that every worker forgets them within milliseconds whoever made
the change (another worker, the CLI, an operator's SQL):

- a token's access-token hash when a column an answer reads changes on its row;
- "*" (forget everything) when a grant, user, hub or client changes in a column an answer reads,
  when any membership changes, and when rows of these tables or resource servers are deleted or
  truncated.

The column lists are authserver/changes.py WATCHED, which applies the same rule to this worker's
own statements; tests/oauth/test_answer_cache.py checks that the two agree.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

CHANNEL = 'authserver_changes'
#: table -> the columns whose UPDATE is announced (None: any UPDATE is).
WATCHED = {
    'tokens': ('revoked_at', 'access_revoked_at', 'scope', 'access_expires_at', 'issued_at', 'access_token_hash',
               'grant_id', 'client_pk'),
    'grants': ('revoked_at', 'user_id', 'hub_id', 'resource_id'),
    'users': ('disabled',),
    'memberships': None,
    'hubs': ('public_id',),
    'clients': ('client_id',),
    'resource_servers': (),
}


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(f"""
        CREATE FUNCTION authserver_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '*');
            RETURN NULL;
        END $$""")
    op.execute(f"""
        CREATE FUNCTION authserver_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', OLD.access_token_hash);
            RETURN NULL;
        END $$""")
    for table, columns in WATCHED.items():
        if columns is None:
            op.execute(f"CREATE TRIGGER {table}_changed AFTER UPDATE OR DELETE OR TRUNCATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION authserver_changed()")
            continue
        if columns:
            changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in columns)
            function = 'authserver_token_changed' if table == 'tokens' else 'authserver_changed'
            op.execute(f"CREATE TRIGGER {table}_changed AFTER UPDATE ON {table} FOR EACH ROW "
                       f"WHEN ({changed}) EXECUTE FUNCTION {function}()")
        op.execute(f"CREATE TRIGGER {table}_deleted AFTER DELETE OR TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION authserver_changed()")


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table, columns in WATCHED.items():
        op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_deleted ON {table}")
    op.execute("DROP FUNCTION IF EXISTS authserver_changed()")
    op.execute("DROP FUNCTION IF EXISTS authserver_token_changed()")
