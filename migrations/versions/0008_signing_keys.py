"""Signing keys for JWT access tokens, a token format per resource server, tokens' auth_time.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05

Written by hand. A new table; resource_servers.token_format is NOT NULL with the server default
'opaque', so every existing resource server keeps the tokens it had; tokens.auth_time is
nullable without backfill (older rows have none, and their JWTs, if any, carry no auth_time).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'signing_keys',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('kid', sa.String(length=64), nullable=False),
        sa.Column('alg', sa.String(length=10), nullable=False),
        sa.Column('public_jwk', sa.Text(), nullable=False),
        sa.Column('private_jwk_sealed', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('active_at', sa.DateTime(), nullable=False),
        sa.Column('retired_at', sa.DateTime(), nullable=True),
        sa.Column('published_until', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_signing_keys')),
        sa.UniqueConstraint('kid', name=op.f('uq_signing_keys_kid')),
    )
    with op.batch_alter_table('resource_servers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('token_format', sa.String(length=10), server_default='opaque', nullable=False))
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auth_time', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('auth_time')
    with op.batch_alter_table('resource_servers', schema=None) as batch_op:
        batch_op.drop_column('token_format')
    op.drop_table('signing_keys')
