"""outbox dispatch

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 04:45:26.928648
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient_user_id", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column("send_after", app.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("next_attempt_at", app.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("last_error", sa.String(length=200), nullable=True))
        batch_op.drop_index(batch_op.f("ix_outbox_messages_status"))
        batch_op.create_index("ix_outbox_messages_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_recipient_user_id"), ["recipient_user_id"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_messages_recipient_user_id_users"),
            "users",
            ["recipient_user_id"],
            ["id"],
            ondelete="SET NULL",
        )

    # Messages written before the dispatcher existed were due when they were written.
    op.execute("UPDATE outbox_messages SET send_after = created_at, next_attempt_at = created_at")
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.alter_column(
            "send_after", existing_type=app.db.UTCDateTime(timezone=True), nullable=False
        )
        batch_op.alter_column(
            "next_attempt_at", existing_type=app.db.UTCDateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_outbox_messages_recipient_user_id_users"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_outbox_messages_recipient_user_id"))
        batch_op.drop_index("ix_outbox_messages_due")
        batch_op.create_index(batch_op.f("ix_outbox_messages_status"), ["status"], unique=False)
        batch_op.drop_column("last_error")
        batch_op.drop_column("next_attempt_at")
        batch_op.drop_column("send_after")
        batch_op.drop_column("recipient_user_id")
