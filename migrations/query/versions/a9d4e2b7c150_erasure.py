"""erasure: users.deleted_at, the tombstone an erased account leaves

Revision ID: a9d4e2b7c150
Revises: f064a3559df0
Create Date: 2026-11-28 02:10:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a9d4e2b7c150'
down_revision = 'f064a3559df0'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True), schema='read_model')


def downgrade():
    op.drop_column('users', 'deleted_at', schema='read_model')
