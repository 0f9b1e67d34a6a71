"""Routing documents of one shared Autotask account to tenants: never guessed, never to the wrong organisation."""
from __future__ import annotations

import random
from datetime import date, timedelta

import pandas as pd
import pytest

from core.routing import Document, TenantRules, documents, route, udfs_by_company


def doc(i, company=None, template=None, units=(), udfs=None):
    return Document(i, f"INV-{i}", company, template, frozenset(units), udfs or {})


def test_a_lone_tenant_without_rules_takes_everything():
    result = route([doc(1, 10), doc(2, 11)], {"acme": TenantRules()})
    assert result.owner == {1: "acme", 2: "acme"} and not result.unrouted and not result.conflicts


def test_each_rule_kind_claims_its_documents():
    tenants = {
        "by-company": TenantRules.of(companies=[10]),
        "by-unit": TenantRules.of(business_units=[7]),
        "by-template": TenantRules.of(invoice_templates=[103]),
        "by-udf": TenantRules.of(udf_name="Xero Organisation", udf_values=["Australia"]),
    }
    result = route([
        doc(1, 10, 101),
        doc(2, 11, 101, units=[7]),
        doc(3, 12, 103),
        doc(4, 13, 101, udfs={"xero organisation": " australia "}),
    ], tenants)
    assert result.owner == {1: "by-company", 2: "by-unit", 3: "by-template", 4: "by-udf"}


def test_a_document_matching_two_tenants_or_none_is_reported_not_guessed():
    tenants = {"nz": TenantRules.of(companies=[10]), "au": TenantRules.of(invoice_templates=[102])}
    result = route([doc(1, 10, 102), doc(2, 99, 101), doc(3, 10, 101)], tenants)
    assert result.conflicts == {1: ("au", "nz")}
    assert result.unrouted == [2]
    assert result.owner == {3: "nz"}
    assert result.of("au") == set()


def test_lines_in_two_business_units_of_two_tenants_conflict():
    tenants = {"a": TenantRules.of(business_units=[1]), "b": TenantRules.of(business_units=[2])}
    result = route([doc(1, units=[1, 2]), doc(2, units=[2])], tenants)
    assert result.conflicts == {1: ("a", "b")} and result.owner == {2: "b"}


def test_among_several_tenants_one_without_rules_takes_nothing():
    result = route([doc(1, 10), doc(2, 11)], {"a": TenantRules.of(companies=[10]), "b": TenantRules()})
    assert result.owner == {1: "a"} and result.unrouted == [2]


def test_documents_read_business_units_from_lines_and_udfs_from_company_records():
    invoices = pd.DataFrame({"id": [1, 2], "invoiceNumber": ["INV-1", None], "companyID": [10, 11],
                             "invoiceEditorTemplateID": [101, pd.NA]})
    lines = pd.DataFrame({"invoiceID": [1, 1, 2], "organizationalLevelAssociationID": [5, pd.NA, 6]})
    udfs = udfs_by_company([{"id": 11, "userDefinedFields": [{"name": "Org", "value": "AU"}, {"name": "X", "value": None}]}])
    docs = documents(invoices, lines, company_udfs=udfs, extra_records=[{"id": 3, "companyID": 12}])
    assert docs[0] == Document(1, "INV-1", 10, 101, frozenset({5}), {})
    assert docs[1].number == "id 2" and docs[1].template_id is None and docs[1].business_units == {6}
    assert docs[1].company_udfs == {"Org": "AU"}
    assert docs[2].invoice_id == 3 and docs[2].company_id == 12


def test_no_document_ever_reaches_an_organisation_whose_rules_do_not_claim_it_alone():
    rng = random.Random(3)
    for _ in range(200):
        tenants = {
            name: TenantRules.of(companies=rng.sample(range(20), rng.randint(0, 5)),
                                 invoice_templates=rng.sample(range(100, 105), rng.randint(0, 2)),
                                 business_units=rng.sample(range(5), rng.randint(0, 2)))
            for name in ("a", "b", "c")
        }
        docs = [doc(i, rng.randrange(20), rng.randrange(100, 105), rng.sample(range(5), rng.randint(0, 2)))
                for i in range(30)]
        result = route(docs, tenants)
        for d in docs:
            claimants = [n for n, r in tenants.items()
                         if d.company_id in r.companies or d.template_id in r.invoice_templates
                         or d.business_units & r.business_units]
            if len(claimants) == 1:
                assert result.owner[d.invoice_id] == claimants[0]
            else:
                assert d.invoice_id not in result.owner
                assert (d.invoice_id in result.unrouted) == (not claimants)
                assert (d.invoice_id in result.conflicts) == (len(claimants) > 1)


# ---- through the flow -------------------------------------------------------------------------------
END = date(2026, 11, 24)


@pytest.mark.e2e
def test_the_flow_keeps_only_its_tenants_invoices_and_reports_the_rest(atx_home, prefect_server):
    from flows.invoices import invoices
    from sandbox.stack import SandboxStack

    with SandboxStack(seed=5, invoices=16, window_end=END) as stack:
        other_org = stack.add_org("Other Entity Ltd", "NZ")
        c = stack.customer_ids
        # c[0] is claimed by both tenants (conflict); c[-1] by neither (unrouted).
        stack.connect_tenant("acme", routing={"companies": c[:3]})
        stack.connect_tenant("beta", org=other_org, routing={"companies": [c[0], *c[3:-1]]})
        state = invoices(tenant="acme", since=END - timedelta(days=40), until=END, return_state=True)
        assert state.is_completed(), state.message
        summary = state.result()

        invoices_at = stack.autotask.records("Invoices")
        company_of = {i["invoiceNumber"]: i["companyID"] for i in invoices_at}
        in_xero = [d["InvoiceNumber"] for d in stack.org.invoices.values()]
        assert in_xero and all(company_of[n] in c[1:3] for n in in_xero)
        assert not other_org.invoices
        reported = {o.autotask_number: o.action for o in summary.outcomes if "not routed" in o.action}
        expected_conflicts = {i["invoiceNumber"] for i in invoices_at if i["companyID"] == c[0]}
        expected_unrouted = {i["invoiceNumber"] for i in invoices_at if i["companyID"] == c[-1]}
        assert expected_conflicts or expected_unrouted
        for number in expected_conflicts:
            assert reported[number] == "skipped (not routed: matches acme, beta)"
        for number in expected_unrouted:
            assert reported[number] == "skipped (not routed: matches no tenant)"
