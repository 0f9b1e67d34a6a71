"""One ledger for every document kind: source and target columns instead of Autotask and Xero ones.

sync_ledger:
- doc_type -> kind; a new `source` ("autotask" for every existing row); autotask_id (BIGINT) -> source_id
  (TEXT); autotask_number -> source_number; the unique key becomes (tenant, kind, source, source_id);
- xero_id, xero_number, xero_status, xero_total -> target_id, target_number, target_status, target_total;
  xero_contact_id -> contact_id;
- natural_key_kind, derived from the natural key: "contact_number" for contacts (their ContactNumber), else
  "url" (http:// or https://), "reference" ("Reference:"), any other non-null key "number";
- facts (JSON): what only some kinds have. attached_at moves there as an ISO timestamp string.
sync_watermark: doc_type -> flow, keyed by the flow's name ("invoice" -> "invoices").
sync_window (new): the date windows a flow (a backfill) has worked through.

SQLite cannot rename or retype columns in place: batch mode copies the table (inside the migration's
transaction, so a failure leaves the old table as it was).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

"""
from datetime import timezone
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_RENAMED = {
    "autotask_number": ("source_number", sa.String(100)),
    "xero_id": ("target_id", sa.String(64)),
    "xero_number": ("target_number", sa.String(255)),
    "xero_status": ("target_status", sa.String(20)),
    "xero_total": ("target_total", sa.String(40)),
    "xero_contact_id": ("contact_id", sa.String(64)),
}


def upgrade() -> None:
    with op.batch_alter_table("sync_ledger") as batch:
        batch.drop_constraint("uq_ledger_document", type_="unique")
        batch.alter_column("doc_type", new_column_name="kind", existing_type=sa.String(30), existing_nullable=False)
        batch.alter_column("autotask_id", new_column_name="source_id", type_=sa.Text(), existing_type=sa.BigInteger(),
                           existing_nullable=False, postgresql_using="autotask_id::text")
        for old, (new, type_) in _RENAMED.items():
            batch.alter_column(old, new_column_name=new, existing_type=type_, existing_nullable=True)
        batch.add_column(sa.Column("source", sa.String(30), nullable=False, server_default="autotask"))
        batch.add_column(sa.Column("natural_key_kind", sa.String(20), nullable=True))
        batch.add_column(sa.Column("facts", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))

    bind = op.get_bind()
    ledger = sa.table(
        "sync_ledger",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("natural_key", sa.String()),
        sa.column("natural_key_kind", sa.String()),
        sa.column("attached_at", sa.DateTime(timezone=True)),
        sa.column("facts", sa.JSON()),
    )
    key = ledger.c.natural_key
    for key_kind, condition in (
        # A contact's natural key is its ContactNumber (the company id), never a document number.
        ("contact_number", sa.and_(ledger.c.kind == "contact", key.is_not(None))),
        ("url", sa.or_(sa.func.substr(key, 1, 7) == "http://", sa.func.substr(key, 1, 8) == "https://")),
        ("reference", sa.func.substr(key, 1, 10) == "Reference:"),
        ("number", key.is_not(None)),
    ):
        bind.execute(sa.update(ledger).where(condition, ledger.c.natural_key_kind.is_(None)).values(natural_key_kind=key_kind))

    attached = bind.execute(sa.select(ledger.c.id, ledger.c.attached_at).where(ledger.c.attached_at.is_not(None))).all()
    if attached:
        bind.execute(
            sa.update(ledger).where(ledger.c.id == sa.bindparam("row_id")).values(facts=sa.bindparam("row_facts")),
            [{"row_id": row_id, "row_facts": {"attached_at": _iso(at)}} for row_id, at in attached],
        )
    # A second batch: in SQLite's copy, a constraint added in the batch that renames its columns would
    # have to name them by their old names (and would be dropped silently otherwise).
    with op.batch_alter_table("sync_ledger") as batch:
        batch.drop_column("attached_at")
        batch.create_unique_constraint("uq_ledger_document", ["tenant", "kind", "source", "source_id"])

    # uq_watermark (tenant, doc_type) follows the renamed column: (tenant, flow).
    with op.batch_alter_table("sync_watermark") as batch:
        batch.alter_column("doc_type", new_column_name="flow", type_=sa.String(50), existing_type=sa.String(30),
                           existing_nullable=False)
    watermark = sa.table("sync_watermark", sa.column("flow", sa.String()))
    bind.execute(sa.update(watermark).where(watermark.c.flow == "invoice").values(flow="invoices"))

    op.create_table(
        "sync_window",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(100), nullable=False),
        sa.Column("flow", sa.String(50), nullable=False),
        sa.Column("window_start", sa.Date(), nullable=False),
        sa.Column("window_end", sa.Date(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("facts", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant", "flow", "window_start", "window_end", name="uq_window"),
    )


def _iso(value) -> str:
    # SQLite hands timestamps back naive; the ledger always wrote them in UTC.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def downgrade() -> None:
    raise NotImplementedError("the ledger is never downgraded: restore a backup of the database instead")
