"""Continuous appraisal: each due agent, leased, pulled, appraised, its result stored.

    poller = Poller(store, PollerSettings(replica_id="replica-a"), ear_key, VerifierMetrics())
    poller.start()          # a claiming thread and a pool of pulling workers
    ...
    poller.stop()

One pull of one agent (:meth:`Poller.pull`):

1. a fresh 32-byte nonce, stored as issued;
2. evidence over mutual TLS from the agent's verified checkpoint, so it carries
   only the events after what this fleet verified before;
3. the nonce consumed (once: the store's conditional update);
4. :func:`attestd.verifier.appraise` with that checkpoint;
5. an EAR signed with the service's key; its status is the agent's status;
6. the result, the new checkpoint (only when the log replayed and grew) and any
   status change stored together, fenced by the lease; the same transaction claims
   the next due agent, which the same worker pulls next (:meth:`Store.finish_and_claim`),
   so a busy replica pays one transaction per pull. That claim takes an agent due
   within ``claim_ahead_s`` too, and the worker waits for its due time; a worker
   whose claim found none goes idle, and the claiming thread fills idle workers
   every tick.

An agent that no longer knows the stored checkpoint has a log that went
backwards (shorter than the checkpoint: ``log_regression``) or that forks
from it (as long, another head: ``log_fork``): a rollback of its state or a
second agent at the same address. Either is contraindicated, and the
checkpoint is kept, so it stays contraindicated until an operator removes and
re-registers the agent.
"""

from __future__ import annotations

import hmac
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from attestd.client import AgentCallError, AgentClient
from attestd.errors import AttestdError
from attestd.evidence import LogCheckpoint, open_evidence, replay
from attestd.verifier.appraisal import appraise_to_checkpoint
from attestd.verifier.ear import (
    DEFAULT_RESULT_LIFETIME,
    policy_digest,
    sign_result_with_claims,
)
from attestd.verifier.metrics import VerifierMetrics
from attestd.verifier.policy import Policy, load_policy
from attestd.verifier.result import AppraisalStatus
from attestd.verifier.service.store import (
    NONCE_REPLAYED,
    AgentRecord,
    AgentSpec,
    LeaseLostError,
    Outcome,
    Pull,
    Retention,
    StatusChange,
    Store,
)

__all__ = [
    "AGENT_NOT_SERVING",
    "AGENT_REFUSED",
    "LOG_FORK",
    "LOG_REGRESSION",
    "NONCE_REPLAYED",
    "POLICY_INVALID",
    "PUSH_OVERDUE",
    "UNREACHABLE",
    "Poller",
    "PollerSettings",
]

_log = logging.getLogger("attestd.verifier.service")

LOG_REGRESSION = "log_regression"
"""The agent's log is shorter than the checkpoint this fleet verified: it went backwards."""
LOG_FORK = "log_fork"
"""The agent's log is as long as the verified checkpoint but another head: it forked."""
UNREACHABLE = "unreachable"
"""The status (and reason) of an agent the pull could not reach."""
AGENT_NOT_SERVING = "agent_not_serving"
"""The agent itself says its runtime log does not replay to its register (tampered with,
or an extension lost): it refuses evidence, and nothing it logged can be trusted."""
AGENT_REFUSED = "agent_refused"
PUSH_OVERDUE = "push_overdue"
"""An agent in push mode has not pushed for a whole interval past its due time."""
POLICY_INVALID = "policy_invalid"
_TRANSPORT_FAILURES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
_NONCE_BYTES = 32

#: Called after a status change is stored, with the change and the EAR (if any) that caused it.
ChangeListener = Callable[[StatusChange, str | None], None]


@dataclass(frozen=True)
class PollerSettings:
    """How one replica pulls: ``lease_s`` bounds a pull and a dead replica's hand-over."""

    replica_id: str
    lease_s: float = 30.0
    jitter: float = 0.1
    workers: int = 8
    tick_s: float = 0.2
    #: How often the lease and status gauges are read from the database: two queries,
    #: which at every wake-up of a busy replica's claim loop would cost more than its claims.
    gauges_every_s: float = 1.0
    #: A worker's result transaction also claims an agent due within this many seconds
    #: (the earliest due), and the worker waits for its time rather than going idle: no
    #: hand-off through the claiming thread and its transaction, which otherwise claims
    #: it up to a tick late. At most a quarter of the lease, which must also cover the
    #: agent call (up to half the lease, see :meth:`Poller._client`) and the result.
    claim_ahead_s: float = 0.2
    retention: Retention = field(default_factory=Retention)
    prune_every_s: float = 300.0
    ear_lifetime: timedelta = DEFAULT_RESULT_LIFETIME
    #: How long a policy file's and an agent's TLS files' stat is trusted before they are
    #: looked at again: an edit or a rotation is picked up within this time. A busy
    #: replica pulls an agent many times a second, and four stats per pull cost more
    #: than the whole lease and nonce bookkeeping of its transaction.
    file_check_s: float = 1.0


class Poller:
    """Claims due agents from the store and pulls them on a pool of worker threads."""

    def __init__(
        self,
        store: Store,
        settings: PollerSettings,
        ear_key: ec.EllipticCurvePrivateKey,
        metrics: VerifierMetrics,
        *,
        on_change: ChangeListener | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._key = ear_key
        self._on_change = on_change
        self._clock = clock
        self._pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="pull")
        self._in_flight: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._next_gauges = 0.0
        self._thread: threading.Thread | None = None
        # path -> (stamp, when it was last stat'ed (monotonic), policy, digest)
        self._policies: dict[str, tuple[tuple[int, int], float, Policy, str]] = {}
        self._policies_lock = threading.Lock()
        # name -> (registration, its TLS files' mtimes, when they were last stat'ed
        # (monotonic), client)
        self._clients: dict[str, tuple[AgentSpec, tuple[int, ...], float, AgentClient]] = {}
        self._clients_lock = threading.Lock()
        self._next_prune = 0.0

    # -- the loop ----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="claim", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming and wait for the pulls in flight (their results are stored)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True)
        with self._clients_lock:
            clients, self._clients = list(self._clients.values()), {}
        for *_, client in clients:
            client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except AttestdError as err:  # the database is down: keep trying, loudly
                _log.error("claiming failed: %s", err.diagnostics())
            except Exception:
                _log.exception("claiming failed")
            # A finished pull wakes the loop at once: its worker is free, and the agent
            # may already be due again; otherwise look again after one tick.
            self._wake.wait(self.settings.tick_s)
            self._wake.clear()

    def tick(self) -> int:
        """Claim as many due agents as there are idle workers and start their pulls."""
        now = self._clock()
        with self._lock:
            self._in_flight = {f for f in self._in_flight if not f.done()}
            idle = self.settings.workers - len(self._in_flight)
        claimed = self._claim(now, limit=idle)
        for ticket in claimed:
            future = self._pool.submit(self._pull_and_store, ticket)
            with self._lock:
                self._in_flight.add(future)
        if now >= self._next_gauges:  # at most once per gauge period, however often woken
            self._next_gauges = now + self.settings.gauges_every_s
            self.metrics.leases_held.set(self.store.leases_held(self.settings.replica_id, now=now))
            self.metrics.agents_by_status(self.store.summary())
        if now >= self._next_prune:
            self._next_prune = now + self.settings.prune_every_s
            self.store.prune(self.settings.retention, now=now)
        return len(claimed)

    def pull_due(self) -> int:
        """Claim the due agents and pull them here, one after another (tests, tools)."""
        claimed = self._claim(self._clock(), limit=1 << 16)
        for ticket in claimed:
            self._pull_and_store_once(ticket, claim_next=False)
        return len(claimed)

    def _claim(self, now: float, *, limit: int) -> list[Pull]:
        # The claim issues each agent's nonce and reads its checkpoint too: one
        # transaction before the agent is called, not one per agent more.
        return self.store.claim_pulls(
            self.settings.replica_id,
            now=now,
            lease_s=self.settings.lease_s,
            limit=limit,
            nonce=_new_nonce,
        )

    def _pull_and_store(self, ticket: Pull) -> None:
        # A worker goes on with the next due agent its result's transaction claimed, so a
        # busy replica pays one transaction per pull and no hand-off through the claim
        # thread; it stops at the first pull that claimed nothing (none due, stopping).
        try:
            following: Pull | None = ticket
            while following is not None:
                # A chained claim may be a little ahead of the agent's due time (claim_ahead_s).
                wait = following.agent.next_due_at - self._clock()
                if wait > 0 and self._stopping.wait(wait):
                    self._release(following.agent)
                    break
                following = self._pull_and_store_once(
                    following, claim_next=not self._stopping.is_set()
                )
        finally:
            self._wake.set()

    def _pull_and_store_once(self, ticket: Pull, *, claim_next: bool) -> Pull | None:
        agent = ticket.agent
        try:
            began = time.perf_counter()
            outcome = self.pull(agent, ticket)
            return self.store_outcome(agent, outcome, began=began, claim_next=claim_next)
        except LeaseLostError:
            return None
        except Exception:
            _log.exception("%s: the pull failed", agent.spec.name)
            self._release(agent)
            return None

    def _release(self, agent: AgentRecord) -> None:
        try:
            self.store.release(agent.id, self.settings.replica_id)
        except Exception:  # the database is down too: the lease will expire on its own
            _log.exception("%s: releasing the lease failed", agent.spec.name)

    def store_outcome(
        self, agent: AgentRecord, outcome: Outcome, *, began: float, claim_next: bool = False
    ) -> Pull | None:
        """Store ``outcome`` under this replica's lease on ``agent`` and report its change.

        The one path from an appraisal to the database, the webhooks and the
        metrics, for pulled and pushed evidence alike. LeaseLostError (logged) if
        the lease expired first: nothing was written. ``claim_next``: also claim the
        next due agent in the same transaction, returned (None: none due) for the
        caller to pull.
        """
        now = self._clock()
        spread = 1 + random.uniform(-self.settings.jitter, self.settings.jitter)  # noqa: S311 - scheduling, not secrets
        try:
            change, following = self.store.finish_and_claim(
                agent.id,
                self.settings.replica_id,
                outcome,
                now=now,
                next_due_at=now + agent.spec.interval_s * spread,
                next_pulls=1 if claim_next else 0,
                lease_s=self.settings.lease_s,
                nonce=_new_nonce,
                ahead_s=min(self.settings.claim_ahead_s, self.settings.lease_s / 4),
                as_claimed=agent,
            )
        except LeaseLostError as err:
            _log.warning("%s: result dropped: %s", agent.spec.name, err)
            raise
        self.metrics.pull_seconds.observe(time.perf_counter() - began)
        if change is not None:
            _log.info(
                "%s: %s -> %s (%s)",
                agent.spec.name,
                change.old_status,
                change.new_status,
                change.reason,
            )
            if self._on_change is not None:
                try:
                    self._on_change(change, outcome.ear)
                except Exception:  # the change is stored; watchers still see it
                    _log.exception("%s: the status-change listener failed", agent.spec.name)
        return following[0] if following else None

    def appraise_pushed(
        self,
        agent: AgentRecord,
        envelope: bytes,
        nonce: bytes,
        checkpoint: LogCheckpoint | None,
        *,
        started: float,
    ) -> Outcome:
        """Appraise evidence ``agent`` pushed for ``nonce`` (already consumed), as a pull's."""
        try:
            policy, digest = self._policy(agent.spec.policy_path)
        except AttestdError as err:
            _log.error("%s: %s", agent.spec.name, err.diagnostics())
            return Outcome("none", POLICY_INVALID, started)
        outcome = self._appraise(envelope, nonce, policy, digest, checkpoint, started)
        if checkpoint is not None and outcome.status == "contraindicated":
            return self._pushed_divergence(envelope, nonce, policy, checkpoint, started) or outcome
        return outcome

    def _pushed_divergence(
        self,
        envelope: bytes,
        nonce: bytes,
        policy: Policy,
        checkpoint: LogCheckpoint,
        started: float,
    ) -> Outcome | None:
        """``log_regression`` or ``log_fork`` for pushed evidence that left the checkpoint.

        An agent whose log no longer holds the verified checkpoint pushes its whole
        log (agent/push.py), which the appraisal from the checkpoint refuses. Where
        that whole log verifies on its own (it replays to the quoted register or the
        bound head), it says how the agent diverged, as a pull's ``_diverged`` does;
        anything else (None) leaves the appraisal's own reasons.
        """
        result, reached = appraise_to_checkpoint(envelope, nonce=nonce, policy=policy)
        if reached is None or result.status is AppraisalStatus.CONTRAINDICATED:
            return None
        if reached.length >= checkpoint.length:
            events = open_evidence(envelope)[1].predicate.runtime_log[: checkpoint.length]
            if hmac.compare_digest(replay(events), checkpoint.head):
                return None  # it holds the checkpoint after all: the refusal stands as it is
        return _divergence("pushed", reached.length, checkpoint, started)

    # -- one pull ----------------------------------------------------------------------------

    def pull(self, agent: AgentRecord, ticket: Pull | None = None) -> Outcome:
        """Pull and appraise ``agent`` once; the outcome to store (never raises for the agent).

        ``ticket``: the nonce and checkpoint its claim issued and read (None: issue and
        read them here).
        """
        started = self._clock()
        if agent.spec.push_pin:
            # Claimed only when overdue (Store.claim_due): it stopped pushing.
            return Outcome(UNREACHABLE, PUSH_OVERDUE, started)
        try:
            policy, digest = self._policy(agent.spec.policy_path)
        except AttestdError as err:
            _log.error("%s: %s", agent.spec.name, err.diagnostics())
            return Outcome("none", POLICY_INVALID, started)
        if ticket is not None:
            nonce, checkpoint = ticket.nonce, ticket.checkpoint
        else:
            nonce = os.urandom(_NONCE_BYTES)
            checkpoint = self.store.begin_pull(
                agent.id, nonce, now=started, ttl_s=self.settings.lease_s
            )
        try:
            client = self._client(agent)
            try:
                envelope = client.evidence(nonce, checkpoint=checkpoint)
            except AgentCallError as err:
                if err.agent_reason == "checkpoint_unknown" and checkpoint is not None:
                    return self._diverged(client, checkpoint, started)
                if err.agent_reason == "agent_not_serving" and _log_disowned(client):
                    return Outcome("contraindicated", AGENT_NOT_SERVING, started)
                raise
        except AgentCallError as err:
            _log.warning("%s: %s", agent.spec.name, err)
            if err.code in _TRANSPORT_FAILURES:
                # A fresh channel next time: a cached one may sit in reconnect backoff
                # (up to minutes) after the agent is back.
                self._drop_client(agent)
                return Outcome(UNREACHABLE, UNREACHABLE, started)
            return Outcome("none", AGENT_REFUSED, started)
        except AttestdError as err:  # the TLS files named for this agent cannot be read
            _log.error("%s: %s", agent.spec.name, err.diagnostics())
            return Outcome("none", err.reason, started)
        # The nonce is consumed when the result is stored (Store.finish), atomically with it.
        return replace(
            self._appraise(envelope, nonce, policy, digest, checkpoint, started), nonce=nonce
        )

    def _appraise(
        self,
        envelope: bytes,
        nonce: bytes,
        policy: Policy,
        digest: str,
        checkpoint: LogCheckpoint | None,
        started: float,
    ) -> Outcome:
        began = time.perf_counter()
        # One parse of the evidence: the appraisal's, which also says where its log ends.
        result, reached = appraise_to_checkpoint(
            envelope, nonce=nonce, policy=policy, checkpoint=checkpoint
        )
        signed = sign_result_with_claims(
            result,
            self._key,
            policy_digest=digest,
            nonce=nonce,
            lifetime=self.settings.ear_lifetime,
        )
        # The agent's status is the EAR's (the worst of its submods'), which also caps a
        # simulated TEE at warning.
        status = signed.status
        reasons = result.reasons
        reason = reasons[0] if reasons else ("ok" if status == "affirming" else "simulated")
        self.metrics.appraised(status, reason, seconds=time.perf_counter() - began)
        verified: LogCheckpoint | None = None
        if result.status is not AppraisalStatus.CONTRAINDICATED and reached != checkpoint:
            # The log replayed to the quoted register (or bound head): its end is the new
            # prefix. An unchanged one (no new events) is not written again.
            verified = reached
        return Outcome(
            status,
            reason,
            started,
            ear=signed.token,
            log_length=result.evidence.log_length,
            checkpoint=verified,
        )

    def _diverged(self, client: AgentClient, checkpoint: LogCheckpoint, started: float) -> Outcome:
        return _divergence("agent's", client.runtime_log(0, 1).length, checkpoint, started)

    def _client(self, agent: AgentRecord) -> AgentClient:
        """The agent's client, kept between pulls: one TLS handshake, not one per pull.

        Keyed by the registration and the TLS files' modification times, so a
        re-registered agent or rotated certificates get a new channel; the files are
        looked at again at most every ``file_check_s``.
        """
        spec = agent.spec
        now = time.monotonic()
        with self._clients_lock:
            cached = self._clients.get(spec.name)
        if (
            cached is not None
            and cached[0] == spec
            and now - cached[2] < self.settings.file_check_s
        ):
            return cached[3]
        files = (spec.cert_path, spec.key_path, spec.ca_path)
        mtimes = tuple(_mtime(path) for path in files)
        if cached is not None and cached[0] == spec and cached[1] == mtimes:
            with self._clients_lock:
                self._clients[spec.name] = (spec, mtimes, now, cached[3])
            return cached[3]
        client = AgentClient.mtls(
            spec.address,
            cert=Path(spec.cert_path),
            key=Path(spec.key_path),
            ca=Path(spec.ca_path),
            server_name=spec.server_name or None,
            # Within the lease, so the result is stored before another replica may take over.
            timeout=self.settings.lease_s / 2,
        )
        with self._clients_lock:
            previous = self._clients.get(spec.name)
            self._clients[spec.name] = (spec, mtimes, now, client)
        if previous is not None:
            previous[3].close()
        return client

    def _drop_client(self, agent: AgentRecord) -> None:
        with self._clients_lock:
            cached = self._clients.pop(agent.spec.name, None)
        if cached is not None:
            cached[3].close()

    def _policy(self, path: str) -> tuple[Policy, str]:
        """The policy at ``path`` and its digest, reloaded when the file changes.

        The file's modification time and size, looked at most every ``file_check_s``,
        say whether it changed: an edit (or a file replaced by another) is read again
        within that time, an unchanged one never.
        """
        now = time.monotonic()
        with self._policies_lock:
            cached = self._policies.get(path)
        if cached is not None and now - cached[1] < self.settings.file_check_s:
            return cached[2], cached[3]
        try:
            info = os.stat(path)
            stamp = (info.st_mtime_ns, info.st_size)
        except OSError:
            stamp = (-1, -1)  # load_policy names the problem
        if cached is not None and cached[0] == stamp:
            policy, digest = cached[2], cached[3]
        else:
            source = Path(path)
            policy = load_policy(source)
            digest = policy_digest(source.read_bytes())
        with self._policies_lock:
            self._policies[path] = (stamp, now, policy, digest)
        return policy, digest


def _log_disowned(client: AgentClient) -> bool:
    """Whether the agent reports a serving problem (its log and register disagree),
    rather than a passing refusal such as shutting down."""
    try:
        info = client.info()
    except AgentCallError:
        return False
    return not info.serving and bool(info.serving_problem)


def _divergence(whose: str, length: int, checkpoint: LogCheckpoint, started: float) -> Outcome:
    """A log of ``length`` events that does not hold the verified checkpoint: shorter is
    ``log_regression`` (a rollback), anything else ``log_fork`` (rewritten, or a second agent).
    """
    reason = LOG_REGRESSION if length < checkpoint.length else LOG_FORK
    _log.error(
        "%s: the %s log (%d events) does not extend the %d verified",
        reason,
        whose,
        length,
        checkpoint.length,
    )
    return Outcome("contraindicated", reason, started)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


def _new_nonce() -> bytes:
    return os.urandom(_NONCE_BYTES)
