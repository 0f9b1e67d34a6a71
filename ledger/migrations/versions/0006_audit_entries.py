"""The audit trail: every write request sent to Xero and Autotask, and its answer, per run.

audit_entries (new): one row per write (POST, PUT, PATCH, DELETE): the run and tenant, the API, method and
path, the HTTP status (none when no answer came back), the request and the answer's ids, statuses and errors
as JSON text (redacted before they are stored), when it was sent and how long it took. Indexed by run (for
`atx audit show --run`) and by tenant and time (for the purge after the tenant's `audit_days`). Nothing
existing changes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "audit_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("api", sa.String(20), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_entries_run_id", "audit_entries", ["run_id"])
    op.create_index("ix_audit_entries_tenant_at", "audit_entries", ["tenant", "at"])


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
