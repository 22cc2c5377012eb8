"""Push mode: the agent calls the verifier service, for fleets it cannot reach (NAT).

    pusher = Pusher.start(agent, config.push)      # a thread; config.push is [push]
    ...
    pusher.stop()

Every ``interval_s`` the agent:

1. asks the verifier (``attestd.verifier.v1.FleetPush/GetChallenge``) for a
   challenge: a fresh nonce, and the checkpoint of its log the fleet verified;
2. makes its own evidence for that nonce from that checkpoint, in process
   (:meth:`Agent.evidence`, so it joins the batch of any pulls in flight);
3. pushes it (``PushEvidence``); the verifier consumes the nonce once, appraises
   the evidence exactly as a pulled one, and answers with the signed EAR.

The verifier knows the agent by the key of its client certificate (registered
with ``attestctl fleet add --push --pin``). A failed round is retried with
exponential backoff (1 s doubling, capped at the interval) and logged with its
reason; the TLS key is read once at start and never logged.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass

import grpc

from attestd._files import read_regular_file
from attestd.agent.config import PushConfig
from attestd.agent.errors import CheckpointUnknownError
from attestd.agent.service import Agent
from attestd.errors import AttestdError
from attestd.evidence import LogCheckpoint
from attestd.v1 import verifier_pb2, verifier_pb2_grpc

__all__ = ["PushRound", "Pusher"]

log = logging.getLogger("attestd.push")

_MAX_TLS_FILE_BYTES = 1 << 20
_FIRST_BACKOFF_S = 1.0
_CALL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PushRound:
    """What the verifier answered one push with."""

    status: str
    reason: str
    ear: str


class Pusher:
    """The push loop of one agent, on its own thread."""

    def __init__(self, agent: Agent, config: PushConfig) -> None:
        self._agent = agent
        self._config = config
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_regular_file(config.ca, _MAX_TLS_FILE_BYTES, "push CA"),
            private_key=read_regular_file(config.key, _MAX_TLS_FILE_BYTES, "push key"),
            certificate_chain=read_regular_file(config.cert, _MAX_TLS_FILE_BYTES, "push cert"),
        )
        options = []
        if config.server_name:
            options.append(("grpc.ssl_target_name_override", config.server_name))
        self._channel = grpc.secure_channel(config.verifier, credentials, options)
        self._stub = verifier_pb2_grpc.FleetPushStub(self._channel)  # type: ignore[no-untyped-call]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push", daemon=True)

    @classmethod
    def start(cls, agent: Agent, config: PushConfig) -> Pusher:
        """Read the TLS files (AttestdError if one cannot be) and start pushing."""
        pusher = cls(agent, config)
        pusher._thread.start()
        return pusher

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._channel.close()  # a call in flight ends now, not after its timeout
        self._thread.join(timeout)

    def push_once(self) -> PushRound:
        """One challenge, evidence and push (grpc.RpcError or AttestdError on failure)."""
        name = self._config.name
        challenge: verifier_pb2.Challenge = self._stub.GetChallenge(
            verifier_pb2.GetChallengeRequest(name=name), timeout=_CALL_TIMEOUT_S
        )
        checkpoint = (
            LogCheckpoint(challenge.checkpoint_length, challenge.checkpoint_head)
            if challenge.has_checkpoint
            else None
        )
        try:
            evidence = self._agent.evidence(challenge.nonce, (), checkpoint)
        except CheckpointUnknownError:
            # The log no longer holds what the fleet verified (rolled back or forked).
            # The whole log goes, and the verifier, holding its checkpoint, judges it.
            log.error("push: the verifier's checkpoint is not in this agent's runtime log")
            evidence = self._agent.evidence(challenge.nonce, (), None)
        answer: verifier_pb2.PushEvidenceResponse = self._stub.PushEvidence(
            verifier_pb2.PushEvidenceRequest(name=name, nonce=challenge.nonce, evidence=evidence),
            timeout=_CALL_TIMEOUT_S,
        )
        return PushRound(answer.status, answer.reason, answer.ear)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                result = self.push_once()
            except grpc.RpcError as err:
                failures += 1
                reason = dict(err.trailing_metadata() or ()).get("attestd-reason", "")
                log.warning(
                    "push failed",
                    extra={"code": str(err.code()), "reason": reason, "failures": failures},
                )
            except AttestdError as err:
                failures += 1
                log.warning("push failed", extra={"reason": err.reason, "failures": failures})
            else:
                failures = 0
                log.info("pushed", extra={"status": result.status, "reason": result.reason})
            interval = float(self._config.interval_s)
            if failures:
                backoff = min(interval, _FIRST_BACKOFF_S * 2 ** (failures - 1))
                wait = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - scheduling, not secrets
            else:
                wait = interval * random.uniform(0.9, 1.1)  # noqa: S311 - scheduling, not secrets
            self._stop.wait(wait)
