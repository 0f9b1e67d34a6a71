"""How many PDFs a run attaches against the day's Xero call budget (core/call_budget.py), pure arithmetic."""
from datetime import date

from core.call_budget import BudgetStatus, PdfPlan, pdf_reserve, pdfs_text, plan_pdfs

DAY = date(2026, 12, 1)


def status(used: int, budget: int = 1000) -> BudgetStatus:
    return BudgetStatus(day=DAY, used=used, budget=budget)


def test_the_pdfs_take_what_the_documents_left_less_the_reserve():
    assert pdf_reserve(1000) == 100 and pdf_reserve(40) == 10  # a tenth, at least 10
    # 5,000 PDFs waiting, 150 calls spent on documents today: 750 now, the rest on later days.
    assert plan_pdfs(5000, status=status(150), per_run=None) == PdfPlan(5000, 750, "daily budget")
    assert plan_pdfs(5000, status=status(150), per_run=None).later == 4250
    assert plan_pdfs(20, status=status(150), per_run=None) == PdfPlan(20, 20, None)  # all fit
    # The reserve is never spent: the day's later runs send their documents with it.
    assert plan_pdfs(50, status=status(905), per_run=None).now == 0
    assert plan_pdfs(50, status=status(1200), per_run=None).now == 0  # the budget lowered below the day's use


def test_a_per_run_cap_and_no_budget():
    assert plan_pdfs(5000, status=status(150), per_run=200) == PdfPlan(5000, 200, "xero.pdfs_per_run")
    assert plan_pdfs(100, status=status(850), per_run=200) == PdfPlan(100, 50, "daily budget")
    assert plan_pdfs(30, status=None, per_run=None) == PdfPlan(30, 30, None)  # a bare gateway counts no day
    assert plan_pdfs(30, status=None, per_run=8) == PdfPlan(30, 8, "xero.pdfs_per_run")


def test_the_report_line():
    assert pdfs_text(12, 30, "daily budget") == "12 PDFs attached, 30 left for the next run (daily budget)"
    assert pdfs_text(1, 0, None) == "1 PDF attached"
