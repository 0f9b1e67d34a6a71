"""The sync ledger: which Autotask document is in Xero, under which id, and why not when it isn't."""
from ledger.models import DocState, SyncRecord
from ledger.store import Candidate, Ledger, LedgerTokenStore, engine_for_url

__all__ = ["Candidate", "DocState", "Ledger", "LedgerTokenStore", "SyncRecord", "engine_for_url"]
