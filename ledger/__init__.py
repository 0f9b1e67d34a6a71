"""The sync ledger: which Autotask document is in Xero, under which id, and why not when it isn't."""
from ledger.models import DocState, SyncRecord
from ledger.store import Candidate, Ledger, engine_for_url
from ledger.tokens import LedgerTokenStore

__all__ = ["Candidate", "DocState", "Ledger", "LedgerTokenStore", "SyncRecord", "engine_for_url"]
