"""A heartbeat per flow run, so a run killed mid-send is known dead within a minute, not after the lease.

run_heartbeat (new): one row per flow run that claims documents: its tenant and flow, when it started,
when it last beat (every few seconds while it runs) and when it ended. A `sending` row whose run has
ended, or has not beaten for the tenant's heartbeat timeout, is looked up in Xero by the next run.
Nothing existing changes; rows claimed by earlier releases have no heartbeat and keep the lease rule.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "run_heartbeat",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("flow", sa.String(50), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
