"""Admin API credentials.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

Written by hand. A new table only: nothing existing changes.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'admin_credentials',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('credential_id', sa.String(length=100), nullable=False),
        sa.Column('secret_hash', sa.String(length=255), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_used_at', sa.DateTime(), nullable=True),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_admin_credentials')),
        sa.UniqueConstraint('credential_id', name=op.f('uq_admin_credentials_credential_id')),
    )


def downgrade():
    op.drop_table('admin_credentials')
