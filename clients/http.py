"""What every HTTP client of the process shares: one TLS context.

httpx builds a context for each client it makes, reading the CA bundle again (about 25 ms of CPU), even
for a plain-HTTP address; a task makes its own Autotask client and each run lists its Xero connections,
so that was paid many times a run. A context is safe to share between threads and clients.
"""
from __future__ import annotations

import functools
import ssl

import httpx


@functools.lru_cache(maxsize=1)
def tls() -> ssl.SSLContext:
    """httpx's own default context (certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set), made once."""
    return httpx.create_ssl_context()
