"""People's accounts at the operator's OpenID Connect providers, linked to users.

Revision ID: 0010_upstream_identities
Revises: 0009
Create Date: 2026-12-06

Written by hand. A new table only: users created at an upstream sign-in keep a password_hash, one
that no password matches (secrets.unusable_password_hash), so users needs no change.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'upstream_identities',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=255), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('last_login_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_upstream_identities_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_upstream_identities')),
        sa.UniqueConstraint('provider', 'subject', name='uq_upstream_identities_provider_subject'),
    )
    with op.batch_alter_table('upstream_identities', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upstream_identities_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('upstream_identities', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upstream_identities_user_id'))
    op.drop_table('upstream_identities')
