"""users.sessions_ended_at: an operator's password reset or disabling ends the user's sessions.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Written by hand. One nullable column without default or backfill, so adding it is a
metadata-only change on a live database; NULL means no session was ended this way.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sessions_ended_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('sessions_ended_at')
