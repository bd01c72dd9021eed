"""account lifecycle: email and status versions, password change, session last use, timeline

Revision ID: f064a3559df0
Revises: 8f3c5a7d2e61
Create Date: 2026-11-28 01:08:00

Rows projected before this revision have no timeline: ``python -m projector rebuild`` fills
it from the topic (kept forever), without stopping the read API.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = 'f064a3559df0'
down_revision = '8f3c5a7d2e61'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('email_version', sa.Integer(), server_default='0', nullable=False),
                  schema='read_model')
    op.add_column('users', sa.Column('status', sa.Text(), server_default='active', nullable=False),
                  schema='read_model')
    op.add_column('users', sa.Column('status_version', sa.Integer(), server_default='0', nullable=False),
                  schema='read_model')
    op.add_column('users', sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=True),
                  schema='read_model')
    op.add_column('sessions', sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
                  schema='read_model')
    op.add_column('sessions', sa.Column('new_device', sa.Boolean(), nullable=True), schema='read_model')
    # A session's last use is at least its start.
    op.execute('UPDATE read_model.sessions SET last_used_at = started_at')
    op.create_table(
        'timeline',
        sa.Column('event_id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('event_type', sa.Text(), nullable=False),
        sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
        schema='read_model',
    )
    op.create_index(
        'ix_timeline_user_sequence', 'timeline', ['user_id', 'sequence', 'event_id'], schema='read_model'
    )


def downgrade():
    op.drop_index('ix_timeline_user_sequence', table_name='timeline', schema='read_model')
    op.drop_table('timeline', schema='read_model')
    op.drop_column('sessions', 'new_device', schema='read_model')
    op.drop_column('sessions', 'last_used_at', schema='read_model')
    op.drop_column('users', 'password_changed_at', schema='read_model')
    op.drop_column('users', 'status_version', schema='read_model')
    op.drop_column('users', 'status', schema='read_model')
    op.drop_column('users', 'email_version', schema='read_model')
