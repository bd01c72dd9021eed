"""sessions: refresh-token families, one current refresh token each

Revision ID: c4a8e1f29b55
Revises: b31f0c2d7a10
Create Date: 2026-11-27 23:20:00

"""
import sqlalchemy as sa
from alembic import op

revision = 'c4a8e1f29b55'
down_revision = 'b31f0c2d7a10'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'sessions',
        sa.Column('id', sa.UUID(), nullable=False),
        sa.Column('user_id', sa.UUID(), nullable=False),
        sa.Column('refresh_jti', sa.UUID(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('end_reason', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id']),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sessions_user', 'sessions', ['user_id'])


def downgrade():
    op.drop_index('ix_sessions_user', table_name='sessions')
    op.drop_table('sessions')
