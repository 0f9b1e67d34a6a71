"""Call limits shared by every process and worker that uses the ledger: Xero's calls a minute and calls in
flight per organisation, Autotask's requests in flight per integration and endpoint (ledger/limits.py).

call_slot (new): one row per slot of a limit (its name and number), busy until an epoch second of the
tenants' clock, and who holds it while a call is in flight. Nothing existing changes; rows are made the
first time a limit is used.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "call_slot",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("busy_until", sa.Float(), nullable=False),
        sa.Column("holder", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("name", "slot"),
    )


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
