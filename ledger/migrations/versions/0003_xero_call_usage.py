"""The daily Xero call count per organisation, so every process and tenant of one organisation shares the
tenant's daily call budget (xero.daily_call_budget).

xero_call_usage (new): one row per Xero organisation (tenant_id) and UTC day, with the calls counted so far.
Nothing existing changes; the table starts empty (the calls made before this revision are not known).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "xero_call_usage",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "day", name="uq_xero_call_usage"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
