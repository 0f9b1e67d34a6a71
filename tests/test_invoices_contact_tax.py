"""tax.from_contact: the Xero contact's default sales tax instead of the mapping's, over HTTP.

A customer already in Xero (ContactNumber = its Autotask id) carries a default sales tax. With the
option on, its invoices' lines take that TaxType where its rate is the one Autotask taxed them at; a
default of another rate sets the invoice aside with both rates named, since Xero's tax would differ.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
import yaml
from xero_python.accounting import Contact

from atx.connections import xero_gateway
from sandbox.stack import SandboxStack
from tests.test_invoices_changes import DEMO, END, connect, manual_clock, run

pytestmark = pytest.mark.e2e


def _mapping(tmp_path, from_contact: bool) -> str:
    data = yaml.safe_load(DEMO.read_text())
    data["tax"]["from_contact"] = from_contact
    path = tmp_path / "contact-tax.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _nz_customer_with_invoices(stack) -> dict:
    billed = {i["companyID"] for i in stack.autotask.records("Invoices") if not i["isVoided"]}
    return next(c for c in stack.autotask.records("Companies")
                if c["id"] in billed and c["taxRegionID"] == 1 and not c["isTaxExempt"])


def _existing_contact(settings, company: dict, tax_type: str) -> str:
    """A person created the customer in Xero before the first sync, with a default sales tax."""
    made = xero_gateway(settings).create_contacts(
        [Contact(name=company["companyName"], contact_number=str(company["id"]), accounts_receivable_tax_type=tax_type)],
        idempotency_key=f"person-contact-{company['id']}-{tax_type}")
    assert made[0].ok, made[0].errors
    return made[0].xero_id


def _add_rate(stack, tax_type: str, rate: str) -> None:
    """The accountant's own rate, as Xero names custom ones."""
    base = dict(stack.org.tax_rates["TAX001"])
    stack.org.tax_rates[tax_type] = {**base, "Name": f"GST {rate}% (custom)", "TaxType": tax_type,
                                     "DisplayTaxRate": Decimal(rate), "EffectiveRate": Decimal(rate),
                                     "TaxComponents": [{"Name": "GST", "Rate": Decimal(rate), "IsCompound": False,
                                                        "IsNonRecoverable": False}]}


@pytest.fixture
def stack(atx_home, prefect_server):
    with SandboxStack(seed=11, invoices=30, window_end=END, clock=manual_clock()) as s:
        yield s


def _their_invoices(stack, contact_id: str) -> list[dict]:
    return [d for d in stack.org.invoices.values() if d["Type"] == "ACCREC" and d["Contact"]["ContactID"] == contact_id]


def test_lines_take_the_contacts_default_sales_tax_of_the_same_rate(stack, tmp_path):
    settings = connect(stack, "acme", mapping=_mapping(tmp_path, True))
    _add_rate(stack, "TAX003", "15")
    company = _nz_customer_with_invoices(stack)
    contact_id = _existing_contact(settings, company, "TAX003")
    _, summary = run()
    theirs = _their_invoices(stack, contact_id)
    assert theirs and all(l["TaxType"] == "TAX003" for d in theirs for l in d["LineItems"] if l["TaxAmount"] != 0)
    # Other customers keep the mapping's TaxType, and every total is still Autotask's.
    others = [d for d in stack.org.invoices.values() if d["Type"] == "ACCREC" and d["Contact"]["ContactID"] != contact_id]
    assert others and not any(l["TaxType"] == "TAX003" for d in others for l in d["LineItems"])
    autotask = {i["invoiceNumber"]: i for i in stack.autotask.records("Invoices")}
    for d in theirs:
        assert d["Total"] == autotask[d["InvoiceNumber"]]["invoiceTotal"].quantize(Decimal("0.01"))
    assert summary.set_aside_count == 0


def test_a_contact_default_of_another_rate_sets_its_invoices_aside_and_off_means_the_mapping(stack, tmp_path):
    settings = connect(stack, "acme", mapping=_mapping(tmp_path, True))
    company = _nz_customer_with_invoices(stack)
    contact_id = _existing_contact(settings, company, "TAX001")  # 10 %, but Autotask taxed it at 15 %
    _, summary = run()
    aside = [o for o in summary.set_aside if o.contact == company["companyName"] or "TAX001" in (o.reason or "")]
    assert aside and all("TAX001 is 10" in o.reason and "15" in o.reason and "tax.from_contact" in o.fix for o in aside)
    assert _their_invoices(stack, contact_id) == []

    # With the option off the mapping decides, and the same invoices go.
    connect(stack, "acme", mapping=_mapping(tmp_path, False))
    _, again = run()
    sent = _their_invoices(stack, contact_id)
    assert sent and all(l["TaxType"] == "OUTPUT2" for d in sent for l in d["LineItems"] if l["TaxAmount"] != 0)
