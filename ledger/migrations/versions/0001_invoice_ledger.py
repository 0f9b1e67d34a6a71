"""The invoice-shaped ledger as the releases before Alembic made it.

Exactly the tables `Base.metadata.create_all` created, with the nullable columns that `_add_missing_columns`
added later (xero_contact_id, xero_status, xero_total, attached_at, attention). A database made by those
releases has these tables but no alembic_version: ledger.migrations stamps it with this revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "sync_ledger",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("doc_type", sa.String(30), nullable=False),
        sa.Column("autotask_id", sa.BigInteger(), nullable=False),
        sa.Column("autotask_number", sa.String(100), nullable=True),
        sa.Column("natural_key", sa.String(255), nullable=True),
        sa.Column("document_date", sa.Date(), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.Column("xero_id", sa.String(64), nullable=True),
        sa.Column("xero_number", sa.String(255), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("fix", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("xero_contact_id", sa.String(64), nullable=True),
        sa.Column("xero_status", sa.String(20), nullable=True),
        sa.Column("xero_total", sa.String(40), nullable=True),
        sa.Column("attached_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attention", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "doc_type", "autotask_id", name="uq_ledger_document"),
    )
    op.create_index("ix_sync_ledger_state", "sync_ledger", ["state"])
    op.create_index("ix_sync_ledger_tenant", "sync_ledger", ["tenant"])
    op.create_table(
        "sync_watermark",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("doc_type", sa.String(30), nullable=False),
        sa.Column("high_water", sa.Date(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "doc_type", name="uq_watermark"),
    )
    op.create_table(
        "xero_token",
        sa.Column("connection", sa.String(100), nullable=False),
        sa.Column("token_json", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("connection"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
