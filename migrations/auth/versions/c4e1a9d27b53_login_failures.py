"""login_failures: failed logins per email (an HMAC of it), account or not

Revision ID: c4e1a9d27b53
Revises: c4a8e1f29b55
Create Date: 2026-11-28 10:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c4e1a9d27b53'
down_revision = 'c4a8e1f29b55'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'login_failures',
        sa.Column('email_key', sa.LargeBinary(), primary_key=True),
        sa.Column('failures', sa.Integer(), server_default='0', nullable=False),
        sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    )


def downgrade():
    op.drop_table('login_failures')
