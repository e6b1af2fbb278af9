"""Index tokens.parent_id: deleting a token row must not scan the table for its successor.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Written by hand. tokens.parent_id references tokens.id ON DELETE SET NULL, so every deleted token
makes the database look for rows whose parent_id is its id: without an index that is a full scan
of tokens per deleted row, which made purging 1,000 expired tokens take seconds on a table of
25,000 rows and would take hours on a million.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tokens_parent_id'), ['parent_id'], unique=False)


def downgrade():
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tokens_parent_id'))
