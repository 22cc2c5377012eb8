"""One quote for every evidence request that arrived while the previous quote was in flight.

    batcher = EvidenceBatcher(serve_batch, max_batch=256)
    future = batcher.submit(request)         # concurrent.futures.Future[bytes]
    envelope = future.result()               # or: await asyncio.wrap_future(future)
    batcher.close()                          # fails what still waits

One worker thread takes quotes, one after another (the hardware serializes
them anyway). Each time it is free it cuts a batch of up to ``max_batch`` of
the requests waiting, in arrival order, and calls ``serve_batch`` with them;
requests arriving meanwhile wait for the next cut. So a quote is always
requested after every nonce of its batch was received, and under load one
quote serves everyone who asked during the previous one. ``max_batch = 1`` is
one quote per request, in arrival order.

``serve_batch`` may return the rest of its work (signing each request's
statement) instead of doing it: that runs on a second thread while the
worker already cuts the next batch and takes its quote, so a batch's signing
never delays the next quote. At most two batches wait for signing; beyond
that the worker waits (backpressure), so memory stays bounded.

Signing is the agent's heaviest CPU work, and verifiers asking back to back
would keep it busy all the time, starving the pipeline the agent measures (on
two cores, its recorded events waited behind it). So the signer may be busy at most
``signing_share`` of the time on average: a budget of signing seconds refills
at that rate, up to a burst of :data:`SIGNING_BURST_S`, and the signer waits
when it has spent it. A slow quote's batch (one a second on TDX) is signed at
once; only a flood of fast quotes is slowed down, and then batches grow.

The batcher knows nothing about evidence: ``serve_batch`` (or what it
returns) settles every request's future (a result or an exception), and
whatever it leaves unsettled is failed here, so no caller ever waits forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from attestd.agent.errors import NotServingError
from attestd.errors import AttestdError

log = logging.getLogger("attestd.agent")

_R = TypeVar("_R")


@dataclass(frozen=True)
class Pending(Generic[_R]):
    """A request waiting for a quote, and the future its caller awaits."""

    request: _R
    future: Future[bytes] = field(default_factory=Future, compare=False)


#: Serves a batch up to its quote; returns the rest of the work (signing), or None when done.
ServeBatch = Callable[[Sequence[Pending[_R]]], Callable[[], None] | None]

_SIGNING_BACKLOG = 2
"""Batches quoted and waiting to be signed before the worker waits for the signer."""

SIGNING_BURST_S = 2.0
"""Signing seconds the signer may spend at once, after being idle."""


class _SigningBudget:
    """Seconds of signing allowed: refilled at ``share`` per second, up to SIGNING_BURST_S."""

    def __init__(
        self,
        share: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._share = share
        self._clock = clock
        self._sleep = sleep
        self._left = SIGNING_BURST_S
        self._at = clock()

    def wait(self) -> None:
        """Sleep until the budget is no longer overdrawn."""
        now = self._clock()
        self._left = min(SIGNING_BURST_S, self._left + (now - self._at) * self._share)
        self._at = now
        if self._left < 0:
            self._sleep(-self._left / self._share)

    def start(self) -> float:
        """Now, by the budget's clock: pass it to :meth:`spend` when the signing is done."""
        return self._clock()

    def spend(self, started: float) -> None:
        """Charge the signing that began at ``started`` (from :meth:`start`)."""
        self._left -= self._clock() - started


class EvidenceBatcher(Generic[_R]):
    """Cuts batches of waiting requests and hands each to ``serve_batch`` on one worker thread."""

    def __init__(
        self, serve_batch: ServeBatch[_R], *, max_batch: int, signing_share: float = 0.6
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if not 0 < signing_share <= 1:
            raise ValueError(f"signing_share must be in (0, 1], not {signing_share}")
        self._budget = _SigningBudget(signing_share)
        self._serve = serve_batch
        self._max = max_batch
        self._waiting: deque[Pending[_R]] = deque()
        self._ready = threading.Condition()
        self._closed = False
        self._signer = ThreadPoolExecutor(1, thread_name_prefix="attestd-evidence-sign")
        self._backlog = threading.BoundedSemaphore(_SIGNING_BACKLOG)
        self._worker = threading.Thread(target=self._run, name="attestd-quotes", daemon=True)
        self._worker.start()

    @property
    def max_batch(self) -> int:
        return self._max

    def submit(self, request: _R) -> Future[bytes]:
        """Queue ``request`` for the next quote; its future settles with the envelope."""
        pending: Pending[_R] = Pending(request)
        with self._ready:
            if self._closed:
                raise NotServingError("the agent is shutting down")
            self._waiting.append(pending)
            self._ready.notify()
        return pending.future

    def _cut(self) -> list[Pending[_R]] | None:
        with self._ready:
            while not self._waiting and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            count = min(self._max, len(self._waiting))
            return [self._waiting.popleft() for _ in range(count)]

    def _run(self) -> None:
        while (batch := self._cut()) is not None:
            self._backlog.acquire()  # released once this batch is settled
            try:
                finish = self._serve(batch)
            except BaseException as err:
                self._settle(batch, err)
                continue
            if finish is None:
                self._settle(batch, None)
            else:
                self._signer.submit(self._finish, batch, finish)

    def _finish(self, batch: Sequence[Pending[_R]], finish: Callable[[], None]) -> None:
        self._budget.wait()
        # Wall time, not CPU time: waiting for the GIL or a core while signing keeps
        # everyone else waiting too, and most of a batch's cost lands elsewhere
        # (the verifiers' loop and gRPC) in proportion to how much is signed.
        started = self._budget.start()
        try:
            finish()
        except BaseException as err:
            self._settle(batch, err)
        else:
            self._settle(batch, None)
        finally:
            self._budget.spend(started)

    def _settle(self, batch: Sequence[Pending[_R]], failure: BaseException | None) -> None:
        """Fail whatever ``batch`` left unsettled, and free its backlog slot."""
        if failure is not None and not isinstance(failure, AttestdError):
            # The agent's refusals (not serving, too large) are answers; anything else is a bug.
            log.error("an evidence batch failed", exc_info=failure)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(
                    failure or RuntimeError("the evidence batch left this request unanswered")
                )
        self._backlog.release()

    def close(self) -> None:
        """Refuse new requests, fail those still waiting, finish the batch being served.

        Waiting requests are failed rather than served: with one quote per
        request and a second per quote, a queue could take minutes to drain.
        """
        with self._ready:
            self._closed = True
            waiting = list(self._waiting)
            self._waiting.clear()
            self._ready.notify_all()
        for pending in waiting:
            pending.future.set_exception(NotServingError("the agent is shutting down"))
        if threading.current_thread() is not self._worker:
            self._worker.join()
        self._signer.shutdown(wait=True)  # batches already quoted are still signed
