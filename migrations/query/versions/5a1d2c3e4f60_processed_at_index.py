"""index processed_events by processed_at (readiness reads the newest)

Revision ID: 5a1d2c3e4f60
Revises: c7158f519427
Create Date: 2026-11-26 22:35:00

"""
from alembic import op

revision = '5a1d2c3e4f60'
down_revision = 'c7158f519427'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_processed_events_processed_at', 'processed_events', ['processed_at'], schema='read_model'
    )


def downgrade():
    op.drop_index('ix_processed_events_processed_at', table_name='processed_events', schema='read_model')
