"""Tokens record the scope their authorization granted, so that a refresh never widens it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Written by hand: one nullable column on tokens, no default and no backfill, so the upgrade is a
metadata-only change on a live database. Rows from before it keep NULL, which means "use scope"
(Token.get_authorized_scope): for them the issued scope is the ceiling, never wider than before.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('authorized_scope', sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('authorized_scope')
