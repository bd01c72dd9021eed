"""sent_mail: one row per mail the notifier claimed, by (event id, kind)

Revision ID: a1b2c3d4e5f6
Revises:
Create Date: 2026-11-28

"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "a1b2c3d4e5f6"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sent_mail",
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "kind", name="sent_mail_pkey"),
    )
    op.create_index("sent_mail_user_id", "sent_mail", ["user_id"])


def downgrade():
    op.drop_index("sent_mail_user_id", table_name="sent_mail")
    op.drop_table("sent_mail")
