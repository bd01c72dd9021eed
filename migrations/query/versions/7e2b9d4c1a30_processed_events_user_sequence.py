"""processed_events records each event's user and sequence (read-your-writes waits for all of them)

Revision ID: 7e2b9d4c1a30
Revises: 5a1d2c3e4f60
Create Date: 2026-11-27 22:55:00

"""
import sqlalchemy as sa
from alembic import op

revision = '7e2b9d4c1a30'
down_revision = '5a1d2c3e4f60'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('processed_events', sa.Column('user_id', sa.UUID(), nullable=True), schema='read_model')
    op.add_column('processed_events', sa.Column('sequence', sa.Integer(), nullable=True), schema='read_model')
    op.create_index(
        'ix_processed_events_user_sequence',
        'processed_events',
        ['user_id', 'sequence'],
        schema='read_model',
    )


def downgrade():
    op.drop_index('ix_processed_events_user_sequence', table_name='processed_events', schema='read_model')
    op.drop_column('processed_events', 'sequence', schema='read_model')
    op.drop_column('processed_events', 'user_id', schema='read_model')
