"""What happened to each document in a run: one row of the run report, for every kind alike."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from core.documents import KINDS, DocumentPlan


class Result(str, Enum):
    CREATED = "created"
    ALREADY = "already in Xero"
    RECOVERED = "recovered"
    UPDATED = "updated in Xero"
    CHANGED_AFTER_APPROVAL = "changed after approval"
    VOIDED = "voided in Xero"
    DELETED = "deleted in Xero (was a draft)"
    ALREADY_VOIDED = "already voided in Xero"
    NEEDS_ATTENTION = "needs attention"
    SET_ASIDE = "set aside"
    IN_FLIGHT = "in flight elsewhere"
    PLANNED = "planned (dry run)"
    SKIPPED = "skipped"
    NOT_SENT = "not sent yet"
    # Payments that need no write (core/payments.py names them the same).
    PARTLY_PAID = "partly paid"
    PAID_IN_XERO = "already paid in Xero"
    FROM_OTHER_SIDE = "came from the other side"


# Results whose document is not (or no longer) in Xero: the report leaves them out of the totals.
NOT_IN_XERO = frozenset({Result.SET_ASIDE, Result.SKIPPED, Result.PLANNED, Result.IN_FLIGHT, Result.NOT_SENT,
                         Result.VOIDED, Result.DELETED, Result.ALREADY_VOIDED, Result.PARTLY_PAID,
                         Result.PAID_IN_XERO, Result.FROM_OTHER_SIDE})
NEEDS_A_PERSON = frozenset({Result.NEEDS_ATTENTION, Result.CHANGED_AFTER_APPROVAL})


@dataclass
class Outcome:
    """What happened to one document in this run."""

    kind: str
    source_id: str
    source_number: str
    result: Result
    contact: str = ""
    currency: str = ""
    source_total: Decimal | None = None
    detail: str | None = None            # shown in brackets after the result ("skipped (voided before sync)")
    xero_id: str | None = None
    xero_number: str | None = None
    xero_total: Decimal | None = None
    status: str | None = None
    reason: str | None = None
    fix: str | None = None
    note: str | None = None

    @property
    def autotask_id(self) -> int | None:
        """The Autotask record's id, when the document is one Autotask record (invoices, POs)."""
        return int(self.source_id) if self.source_id.isdigit() else None

    @property
    def autotask_number(self) -> str:
        return self.source_number

    @property
    def label(self) -> str:
        """The result alone, in the words of the system written to."""
        label = self.result.value
        target = KINDS[self.kind].target
        if target != "Xero" and self.result in (Result.ALREADY, Result.UPDATED):
            label = label.replace("in Xero", f"in {target}")  # a paid date is "already in Autotask"
        return label

    @property
    def action(self) -> str:
        return f"{self.label} ({self.detail})" if self.detail else self.label

    @property
    def document_type(self) -> str:
        kind = KINDS[self.kind]
        return kind.xero_type or ("PURCHASEORDER" if kind.endpoint == "PurchaseOrders" else kind.name.upper())

    @property
    def link(self) -> str | None:
        template = KINDS[self.kind].link
        return template.format(id=self.xero_id) if self.xero_id and template else None

    @classmethod
    def of(cls, plan: DocumentPlan, result: Result, **values) -> "Outcome":
        values.setdefault("xero_number", plan.number)
        return cls(
            kind=plan.kind, source_id=plan.source_id, source_number=plan.source_number, result=result,
            contact=plan.contact.name if plan.contact else "", currency=plan.currency_code or "",
            source_total=plan.source_total, note=plan.note, **values,
        )

    @classmethod
    def of_row(cls, plan: DocumentPlan, result: Result, row, **values) -> "Outcome":
        """An outcome that shows the document as the ledger last saw it in Xero."""
        total = Decimal(row.target_total) if getattr(row, "target_total", None) is not None else None
        values = {"xero_id": row.target_id, "xero_number": row.target_number or plan.number, "xero_total": total,
                  "status": row.target_status, **values}
        return cls.of(plan, result, **values)
