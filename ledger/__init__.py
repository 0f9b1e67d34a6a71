"""The sync ledger: which source document is in Xero, under which id, and why not when it isn't."""
from ledger.models import DocState, NaturalKeyKind, SyncRecord, SyncWatermark, SyncWindow, WindowState, XeroCallUsage
from ledger.store import Candidate, Ledger, engine_for_url
from ledger.tokens import LedgerTokenStore, TokenCipher
from ledger.usage import LedgerCallUsage

__all__ = [
    "Candidate", "DocState", "Ledger", "LedgerCallUsage", "LedgerTokenStore", "NaturalKeyKind", "SyncRecord",
    "SyncWatermark", "SyncWindow", "TokenCipher", "WindowState", "XeroCallUsage", "engine_for_url",
]
