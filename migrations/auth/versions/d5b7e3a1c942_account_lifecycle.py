"""account lifecycle: status, password change time, session devices, pending email changes

Revision ID: d5b7e3a1c942
Revises: c4e1a9d27b53
Create Date: 2026-11-28 01:30:00

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = 'd5b7e3a1c942'
down_revision = 'c4e1a9d27b53'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('users', sa.Column('status', sa.Text(), server_default='active', nullable=False))
    op.add_column('users', sa.Column('password_changed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sessions', sa.Column('device_key', sa.LargeBinary(), nullable=True))
    op.create_index('ix_sessions_user_device', 'sessions', ['user_id', 'device_key'])
    op.create_table(
        'email_changes',
        sa.Column('user_id', postgresql.UUID(as_uuid=True), sa.ForeignKey('users.id'), primary_key=True),
        sa.Column('new_email', sa.Text(), nullable=False),
        sa.Column('code_hash', sa.LargeBinary(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    )


def downgrade():
    op.drop_table('email_changes')
    op.drop_index('ix_sessions_user_device', table_name='sessions')
    op.drop_column('sessions', 'device_key')
    op.drop_column('users', 'password_changed_at')
    op.drop_column('users', 'status')
