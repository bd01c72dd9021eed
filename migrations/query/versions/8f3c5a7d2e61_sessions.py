"""read_model.sessions: login sessions with their device, start and end

Revision ID: 8f3c5a7d2e61
Revises: 7e2b9d4c1a30
Create Date: 2026-11-27 23:25:00

"""
import sqlalchemy as sa
from alembic import op

revision = '8f3c5a7d2e61'
down_revision = '7e2b9d4c1a30'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sessions',
        sa.Column('session_id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('ip', sa.Text(), nullable=True),
        sa.Column('user_agent', sa.Text(), nullable=True),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('end_reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('session_id'),
        schema='read_model',
    )
    op.create_index('ix_sessions_user_started', 'sessions', ['user_id', 'started_at'], schema='read_model')


def downgrade():
    op.drop_index('ix_sessions_user_started', table_name='sessions', schema='read_model')
    op.drop_table('sessions', schema='read_model')
