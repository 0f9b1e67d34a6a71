"""Call limits kept in Prefect's global concurrency limits, so that every flow run, worker and machine that talks
to one Prefect server keeps one budget per Xero organisation and Autotask endpoint, and the dashboard's
Concurrency page shows how much of it is in use. It is the `CallLimits` of clients/limits.py that
atx/connections.py gives the tenants' clients when `ATX_CALL_LIMITS=prefect` (prefect.yaml sets it for every
deployment); `ledger.limits.LedgerLimits` is the other choice, for runs that share a ledger but no server.

Each limit is a global concurrency limit of N slots under the name the client gives it (`xero-<tenantId>-calls`,
`xero-<tenantId>-in-flight`, `autotask-<integration>-<endpoint>`), made the first time it is used, its size
set from the tenant's settings. A slot is taken with a lease, so a slot whose process died comes back when its
lease runs out (Prefect's repossessor looks every 15 s):

- `hold`: the slot is given back when the call ends;
- `paced`, `pace`: the slot is given back 60 seconds after the call's answer (or its taking, for `pace`), by
  this process: N slots are then at most N calls in any of the server's minutes, as with the ledger's slots.
  Prefect's own rate limits (a leaky bucket) cannot promise that near the limit: a bucket of B slots draining
  at d a second lets B + 60·d calls through in a minute, and its 423s come back after a randomised wait. So
  the minute is kept as plain slots whose release this process times, and the lease is only the fallback.

Slots taken here are released by whichever comes first: a call of this process that wants a slot of that
name (it gives back what is due, then takes), or a background thread. A minute's slot is leased for the
longest a call may take and its minute; once the call has its answer the background thread cuts the lease to
Prefect's shortest, 60 s (no less than what is left of the minute), so a process that dies then gives its
slots back a minute later, as the ledger's rows would. A process that ends with slots still inside their
minute cuts their leases the same way.

Time is the tenants' clock (`now`, epoch seconds), so a compressed clock paces in its own minutes; a wait for a
slot another process holds asks again every `poll` seconds of that clock.
"""
from __future__ import annotations

import atexit
import heapq
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID

import httpx

MINUTE = 60.0
# Longer than any call may take (as ledger.limits.LEASE_SECONDS); Prefect's shortest lease is 60 s.
LEASE_SECONDS = 150.0
SHORTEST_LEASE = 60.0
POLL_SECONDS = 0.25
# How long the background thread may leave a due slot before giving it back (wall-clock seconds).
RELEASE_LAG = 0.02

_log = logging.getLogger(__name__)


def _prefect_client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


class PrefectLimits:
    def __init__(self, *, now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 poll: float = POLL_SECONDS, client_factory: Callable = _prefect_client):
        self._now, self._sleep, self._poll = now, sleep, poll
        self._client_factory = client_factory
        self._client = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._sizes: dict[str, int] = {}
        self._held: dict[str, int] = {}  # slots of each name this process holds (in flight or in their minute)
        self._releasing: dict[str, int] = {}  # slots of each name this process is giving back right now
        self._due: list[tuple[float, str, UUID]] = []  # (when its minute is over, name, lease), a heap
        self._answered: list[UUID] = []  # minute slots whose call has its answer: their leases to shorten
        self._releaser: threading.Thread | None = None
        self._closed = False
        self.waited = 0.0
        self.api_calls = 0  # calls to the Prefect API, for the benchmarks
        self.renewals = 0  # of which leases shortened, by the background thread
        _open.add(self)

    # ---- the CallLimits protocol -------------------------------------------------------------------------
    def pace(self, name: str, per_minute: int) -> float:
        with self.paced(name, per_minute) as waited:
            return waited

    @contextmanager
    def paced(self, name: str, per_minute: int) -> Iterator[float]:
        lease, waited = self._take(name, max(int(per_minute), 1), LEASE_SECONDS + MINUTE)
        try:
            yield waited
        finally:
            self._release_at(self._now() + MINUTE, name, lease)

    @contextmanager
    def hold(self, name: str, at_once: int) -> Iterator[None]:
        lease, _ = self._take(name, max(int(at_once), 1), LEASE_SECONDS)
        try:
            yield
        finally:
            self._release(name, lease)

    # ---- slots -------------------------------------------------------------------------------------------
    def _take(self, name: str, size: int, lease_seconds: float) -> tuple[UUID, float]:
        self._ensure(name, size)
        waited = 0.0
        while True:
            self._release_due(name)
            lease = self._try(name, lease_seconds)
            if lease is not None:
                with self._lock:
                    self.waited += waited
                    self._held[name] = self._held.get(name, 0) + 1
                return lease, waited
            with self._wake:
                if self._releasing.get(name):
                    # One of this process's slots is on its way back (the background thread's): ask again once it
                    # is, rather than wait a poll of the clock for it.
                    self._wake.wait_for(lambda: not self._releasing.get(name), timeout=5)
                    continue
                mine = [due for due, held, _ in self._due if held == name]
                all_mine = self._held.get(name, 0) >= size
            delay = self._poll
            if mine:  # this process frees one then; only another process may free one sooner
                until_mine = max(min(mine) - self._now(), 0.0)
                delay = until_mine if all_mine else min(delay, until_mine)
            waited += delay
            self._sleep(delay)

    def _try(self, name: str, lease_seconds: float) -> UUID | None:
        try:
            answer = self._api().increment_concurrency_slots_with_lease(
                names=[name], slots=1, mode="concurrency", lease_duration=lease_seconds)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 423:  # every slot is taken
                return None
            raise
        finally:
            self._count_api_call()
        return UUID(answer.json()["lease_id"])

    def _release(self, name: str, lease: UUID) -> None:
        with self._lock:
            self._held[name] = max(self._held.get(name, 0) - 1, 0)
            self._releasing[name] = self._releasing.get(name, 0) + 1
        try:
            self._api().release_concurrency_slots_with_lease(lease)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code != 404:  # 404: its lease ran out and Prefect took the slot back
                _log.warning("could not give back a slot of %s (Prefect answered %s); its lease frees it",
                             name, exc.response.status_code)
        except httpx.HTTPError as exc:
            # Never raised into the call it limited: that call's answer (a write Xero made) must reach the sync.
            _log.warning("could not give back a slot of %s (%s); its lease frees it", name, type(exc).__name__)
        finally:
            self._count_api_call()
            with self._wake:
                self._releasing[name] -= 1
                self._wake.notify_all()

    def _count_api_call(self, *, renewal: bool = False) -> None:
        with self._lock:
            self.api_calls += 1
            self.renewals += renewal

    def _release_at(self, when: float, name: str, lease: UUID) -> None:
        with self._wake:
            heapq.heappush(self._due, (when, name, lease))
            self._answered.append(lease)
            if self._releaser is None:
                self._releaser = threading.Thread(target=self._release_in_background, name="prefect-limits",
                                                  daemon=True)
                self._releaser.start()
            self._wake.notify()

    def _release_due(self, name: str | None = None) -> None:
        """Give back the slots (of `name`, or any) whose minute is over."""
        now = self._now()
        with self._lock:
            due = [entry for entry in self._due if entry[0] <= now and (name is None or entry[1] == name)]
            if due:
                self._due = [entry for entry in self._due if entry not in due]
                heapq.heapify(self._due)
        for _, held, lease in due:
            self._release(held, lease)

    def _release_in_background(self) -> None:
        while True:
            with self._wake:
                while not self._due and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                answered, self._answered = self._answered, []
            if answered:
                self._shorten(answered)
            with self._wake:
                if not self._due:
                    continue
                wait = self._due[0][0] - self._now()
                if wait > 0:
                    # Seconds of the tenants' clock are at most wall seconds (a compressed clock runs faster):
                    # looking again after RELEASE_LAG at the latest never keeps a slot much past its minute.
                    self._wake.wait(min(wait, RELEASE_LAG))
                    continue
            self._release_due()

    def _shorten(self, leases: list[UUID]) -> None:
        """Leases of minute slots whose call has its answer, cut to Prefect's shortest (60 s, no less than the
        minute left): should this process die now, they come back a minute later, not after the longest call
        too. Off the calls' path, by the background thread."""
        for lease in leases:
            try:
                self._api().renew_concurrency_lease(lease, lease_duration=SHORTEST_LEASE)
            except httpx.HTTPError:
                pass  # given back already (404), or Prefect is away: the longer lease stands
            finally:
                self._count_api_call(renewal=True)

    def _ensure(self, name: str, size: int) -> None:
        """The global concurrency limit `name` exists with `size` slots (checked once a process)."""
        with self._lock:
            if self._sizes.get(name) == size:
                return
        from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
        from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

        api = self._api()
        try:
            limit = api.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                api.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=size))
            except ObjectAlreadyExists:  # another process made it first
                limit = api.read_global_concurrency_limit_by_name(name)
            else:
                limit = None
        if limit is not None and (limit.limit != size or not limit.active):
            api.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=size, active=True))
        with self._lock:
            self._sizes[name] = size

    def _api(self):
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
                self._client.__enter__()
            return self._client

    # ---- the end of the process ------------------------------------------------------------------------
    def close(self) -> None:
        """Give back what is due; shorten the leases of slots still inside their minute to Prefect's shortest,
        which is at least what is left of it; stop the background thread."""
        self._release_due()
        with self._wake:
            left, self._due, self._answered = list(self._due), [], []
            self._closed = True
            self._wake.notify_all()
        client, self._client = self._client, None
        if client is None:
            return
        try:
            for _, _, lease in left:
                try:
                    client.renew_concurrency_lease(lease, lease_duration=SHORTEST_LEASE)
                except httpx.HTTPError:
                    pass  # its lease still runs out, only later
        finally:
            client.__exit__(None, None, None)

    def limit_names(self) -> list[str]:
        with self._lock:
            return sorted(self._sizes)

    def __repr__(self) -> str:
        return "PrefectLimits()"


_open: "weakref.WeakSet[PrefectLimits]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for limits in list(_open):
        try:
            limits.close()
        except Exception:  # noqa: BLE001 - the interpreter is going away; the leases run out anyway
            pass
