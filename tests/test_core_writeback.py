from datetime import date

import pandas as pd

from core.documents import WRITE_BACK
from core.writeback import SyncedDocument, key_fields, plan_write_backs, with_original_numbers, write_key

DOC = SyncedDocument(autotask_id="6001", autotask_number="T2026.0001", xero_number="INV-0042", synced_on=date(2026, 11, 24))


def test_one_plan_per_invoice_whose_key_names_every_field_and_value_written():
    [plan] = plan_write_backs([DOC], invoice_number=True, web_service_date=True)
    assert plan.kind == WRITE_BACK.name and plan.source_id == "6001" and plan.sendable
    assert plan.writes == (("invoiceNumber", "INV-0042"), ("webServiceDate", date(2026, 11, 24)))
    assert plan.natural_key == "6001@invoiceNumber=INV-0042;webServiceDate=2026-11-24"
    assert key_fields(plan.natural_key) == ("6001", ("invoiceNumber", "webServiceDate"))
    assert plan_write_backs([DOC], invoice_number=True, web_service_date=True)[0].content_hash == plan.content_hash


def test_only_the_fields_turned_on_are_written():
    [plan] = plan_write_backs([DOC], invoice_number=False, web_service_date=True)
    assert plan.writes == (("webServiceDate", date(2026, 11, 24)),)
    assert plan_write_backs([DOC], invoice_number=False, web_service_date=False) == []


def test_a_number_autotask_cannot_hold_is_set_aside_with_the_fix():
    long = SyncedDocument("6002", "T2", "X" * 101, date(2026, 11, 24))
    missing = SyncedDocument("6003", "T3", None, date(2026, 11, 24))
    plans = plan_write_backs([long, missing], invoice_number=True, web_service_date=False)
    assert [p.set_aside is not None for p in plans] == [True, True]
    assert "100 characters" in plans[0].set_aside.reason and plans[0].set_aside.fix


def test_invoices_are_mapped_with_the_number_they_had_before_the_write_back():
    frame = pd.DataFrame({"id": [6001, 6002], "invoiceNumber": ["INV-0042", "T2026.0002"]})
    restored = with_original_numbers(frame, {"6001": ("INV-0042", "T2026.0001"), "6002": ("INV-0043", "T2026.9")})
    # 6002 was changed in Autotask since (it no longer holds the number written): kept as Autotask has it.
    assert list(restored["invoiceNumber"]) == ["T2026.0001", "T2026.0002"]
    assert list(frame["invoiceNumber"]) == ["INV-0042", "T2026.0002"]
    assert write_key("1", ()) == "1@"
