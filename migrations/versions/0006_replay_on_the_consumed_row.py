"""The replay answer lives on the consumed code or rotated token row: the replay_cache table goes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Written by hand. The sealed answer an identical retry gets is now written by the same conditional
UPDATE that consumes the code or rotates the refresh token (one INSERT fewer per token request,
and no purge of expired entries), and its grace window is read from consumed_at / rotated_at. Two
nullable columns without default or backfill, so adding them is a metadata-only change on a live
database. Answers cached in replay_cache when it is dropped are lost: a retry inside the grace
window of a redemption made just before the upgrade is treated as a replay. Instances still
running the previous release fail their token requests once the table is gone (their transaction
rolls back, so nothing is issued or consumed and the client's retry succeeds on a new instance):
restart them right after the upgrade.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replay', sa.LargeBinary(), nullable=True))
    with op.batch_alter_table('replay_cache', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_replay_cache_expires_at'))
    op.drop_table('replay_cache')


def downgrade():
    # The table as 0001 created it, empty: retries inside the grace window of redemptions made
    # before the downgrade are treated as replays.
    op.create_table('replay_cache',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('ciphertext', sa.LargeBinary(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replay_cache')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_replay_cache_key_hash'))
    )
    with op.batch_alter_table('replay_cache', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_replay_cache_expires_at'), ['expires_at'], unique=False)
    with op.batch_alter_table('authorization_codes', schema=None) as batch_op:
        batch_op.drop_column('replay')
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('replay')
