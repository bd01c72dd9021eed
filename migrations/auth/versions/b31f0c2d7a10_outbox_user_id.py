"""outbox.aggregate_id is called user_id, like everywhere else

Revision ID: b31f0c2d7a10
Revises: 9ff63399f760
Create Date: 2026-11-27 23:00:00

"""
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b31f0c2d7a10'
down_revision = '9ff63399f760'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column('outbox', 'aggregate_id', new_column_name='user_id')


def downgrade():
    op.alter_column('outbox', 'user_id', new_column_name='aggregate_id')
