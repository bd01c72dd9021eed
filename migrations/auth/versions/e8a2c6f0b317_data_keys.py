"""data_keys: each user's data key, wrapped by a master key (crypto-shredding)

Revision ID: e8a2c6f0b317
Revises: d5b7e3a1c942
Create Date: 2026-11-28 01:45:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'e8a2c6f0b317'
down_revision = 'd5b7e3a1c942'
branch_labels = None
depends_on = None


def upgrade():
    # Users from before encryption get a key with their next event (SqlUnitOfWork._key).
    op.create_table(
        'data_keys',
        sa.Column('user_id', postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column('key_id', postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column('master_key_id', sa.Text(), nullable=False),
        sa.Column('wrapped', sa.LargeBinary(), nullable=False),
    )


def downgrade():
    op.drop_table('data_keys')
