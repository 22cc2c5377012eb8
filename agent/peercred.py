"""Who is calling: the kernel's credentials of every pipeline connection.

gRPC Python gives a servicer no way to the connection's socket (``peer()`` of a
Unix connection is just ``"unix:"``, and no auth context carries a uid), so it
cannot read ``SO_PEERCRED`` itself. The agent therefore accepts on the public
Unix socket itself, in a :class:`PeerRelay`:

1. it reads ``SO_PEERCRED`` of the accepted connection (the pid, uid and gid the
   kernel recorded when the peer called ``connect``);
2. it refuses (closes) a connection whose uid or gid the :class:`CallerPolicy`
   does not allow, and logs the refusal with the identity;
3. it opens a connection to the gRPC server's internal socket, in a directory
   only the agent may enter (its state directory), after binding its own end
   to the abstract address ``@attestd-peer/<pid>/<uid>/<gid>/<nonce>``, and
   relays bytes both ways.

gRPC reports that address as the call's peer, so the servicer asks
:meth:`PeerRelay.caller_of` who is calling::

    relay = PeerRelay(Path("/run/attestd/attestd.sock"), 0o660, CallerPolicy(frozenset({1000})))
    relay.prepare_internal(state_dir)                 # a 0700 directory of the agent's
    server.add_insecure_port(relay.internal_target)   # the gRPC server listens inside
    relay.bind()
    await server.start(); await relay.start()
    caller = relay.caller_of(context.peer())          # in a servicer: Caller(pid, uid, gid)
    await relay.close()

The identity comes from the kernel, never from the request: ``caller_of``
accepts only an address this relay made for a connection that is still open
(the whole address, with its 128-bit nonce and the pid, uid and gid that were
read, is looked up as the relay spelled it), so a process that reaches the
internal socket some other way, or binds a look-alike address, is refused.

Each relayed direction holds at most :data:`RELAY_BUFFER_BYTES` of unsent data
(plus one read) before it stops reading from its source, so a slow reader
slows its writer instead of growing the agent's memory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import stat
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from attestd.agent.errors import AgentError, ListenError
from attestd.evidence import Caller  # the value the runtime log records; re-exported here

__all__ = [
    "Caller",
    "CallerPolicy",
    "PeerRelay",
    "PeerUnknownError",
    "peer_credentials",
]

log = logging.getLogger("attestd.peercred")

#: The first element of every relay address; gRPC reports it as
#: ``unix-abstract:attestd-peer/<pid>/<uid>/<gid>/<nonce>``.
PEER_PREFIX = "attestd-peer"

#: Unsent bytes one relayed direction may hold before it pauses its source.
RELAY_BUFFER_BYTES = 256 * 1024

#: Relayed connections open at once; more are refused (each costs two descriptors).
MAX_RELAYED_CONNECTIONS = 1024

#: The gRPC server's socket inside the agent's private directory.
INTERNAL_SOCKET_NAME = "grpc.sock"

#: The longest path a Unix socket may have (sun_path is 108 bytes with its NUL).
MAX_UNIX_PATH_BYTES = 107

_NONCE_HEX = 32
_UCRED = struct.Struct("3i")  # struct ucred: pid_t pid, uid_t uid, gid_t gid


class PeerUnknownError(AgentError):
    """A pipeline call did not come through the agent's relay, so its caller is unknown."""

    reason = "peer_unknown"


@dataclass(frozen=True)
class CallerPolicy:
    """Which callers may connect: each non-empty list must contain the caller's id.

    Both empty (the default) allows any process that can open the socket.
    """

    uids: frozenset[int] = frozenset()
    gids: frozenset[int] = frozenset()

    def refusal(self, caller: Caller) -> str | None:
        """Why ``caller`` is refused, or None when it is allowed."""
        if self.uids and caller.uid not in self.uids:
            return f"uid {caller.uid} is not in [pipeline] allowed_uids"
        if self.gids and caller.gid not in self.gids:
            return f"gid {caller.gid} is not in [pipeline] allowed_gids"
        return None


def peer_credentials(sock: socket.socket) -> Caller:
    """The kernel's ``SO_PEERCRED`` of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    # The kernel reports uid_t/gid_t; struct "i" reads them signed.
    return Caller(pid, uid & 0xFFFFFFFF, gid & 0xFFFFFFFF)


def _require_private(directory: Path) -> None:
    """Refuse a directory that is not this user's alone: its socket would be reachable."""
    try:
        info = directory.lstat()
    except OSError as err:
        raise ListenError(f"cannot examine {directory}: {err.strerror}") from err
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise ListenError(
            f"{directory} must be a directory of this user with mode 0700 "
            "to hold the agent's internal socket"
        )


def _remove_stale_socket(path: Path) -> None:
    """Unlink a socket a killed agent left; refuse to remove anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise ListenError(f"cannot examine {path}: {err.strerror}") from err
    if not stat.S_ISSOCK(mode):
        raise ListenError(f"{path} exists and is not a socket; refusing to replace it")
    path.unlink()


class _Half(asyncio.Protocol):
    """One side of a relayed connection; what it receives is written to the other side."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=RELAY_BUFFER_BYTES)

    def _other(self) -> _Half:
        return self.link.upstream if self is self.link.client else self.link.client

    def data_received(self, data: bytes) -> None:
        other = self._other().transport
        if other is None or other.is_closing():
            return  # the link is going away; the bytes have nowhere to go
        other.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        other = self._other()
        if other.transport is not None and not other.transport.is_closing():
            other.transport.write_eof()  # a half-close is passed on, not turned into a close
        if other.eof:
            self.link.close()
            return False
        return True  # keep our side open for the other direction's remaining bytes

    # Our write buffer passed the high-water mark: stop reading what fills it.
    def pause_writing(self) -> None:
        other = self._other().transport
        if other is not None and not other.is_closing():
            other.pause_reading()

    def resume_writing(self) -> None:
        other = self._other().transport
        if other is not None and not other.is_closing():
            other.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.link.close()
        self.link.half_lost()


class _ClientHalf(_Half):
    """The accepted side: its credentials decide whether the link is made at all."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.link.relay._accepted(self.link)


class _Link:
    """One relayed connection: the client's side, the upstream side, and its address."""

    def __init__(self, relay: PeerRelay) -> None:
        self.relay = relay
        self.client: _Half = _ClientHalf(self)
        self.upstream: _Half = _Half(self)
        self.peer: str | None = None  # the address gRPC reports, once bound
        self.closed = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        """Close both sides (once); buffered bytes are still flushed by the transports."""
        if self.closed:
            return
        self.closed = True
        self.relay._forget(self)
        for half in (self.client, self.upstream):
            if half.transport is not None:
                half.transport.close()
        self.half_lost()

    def half_lost(self) -> None:
        """Resolve :attr:`done` once every side that was connected has been lost."""
        if not self.closed or self.done.done():
            return
        if all(h.transport is None or h.lost for h in (self.client, self.upstream)):
            self.done.set_result(None)
            self.relay._finished(self)


class PeerRelay:
    """The public pipeline socket: accepts, checks credentials, relays to the gRPC server."""

    def __init__(self, public_path: Path, mode: int, policy: CallerPolicy) -> None:
        self.public_path = public_path
        self._mode = mode
        self._policy = policy
        self.internal_dir: Path | None = None  # chosen by prepare_internal()
        self.internal_socket = Path()
        self._made_dir: Path | None = None  # a mkdtemp directory, ours to remove
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()  # open, counted against MAX_RELAYED_CONNECTIONS
        self._unfinished: set[_Link] = set()  # closed or not, some transport still to be lost
        self._callers: dict[str, Caller] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._bound = False

    @property
    def internal_target(self) -> str:
        """The address the gRPC server listens on (``unix:<path>``), once prepared."""
        if self.internal_dir is None:
            raise ListenError("the agent's private directory was not made")
        return f"unix:{self.internal_socket}"

    def prepare_internal(self, private_dir: Path) -> None:
        """Choose where the gRPC server's socket lives: in ``private_dir`` if it fits.

        ``private_dir`` must be a directory of this user that no one else may
        enter (the agent's state directory, mode 0700, whose lock it holds, so
        a socket left there by a killed agent is stale and is replaced). A
        Unix socket's path has at most 107 bytes; where ``private_dir`` is too
        deep for that, a fresh directory of mode 0700 made by ``mkdtemp`` in
        ``$TMPDIR`` (else ``/tmp``) is used instead and removed by :meth:`close`.
        """
        socket_path = private_dir / INTERNAL_SOCKET_NAME
        if len(os.fsencode(socket_path)) <= MAX_UNIX_PATH_BYTES:
            _require_private(private_dir)
            _remove_stale_socket(socket_path)
            self.internal_dir, self.internal_socket = private_dir, socket_path
            return
        try:
            directory = Path(tempfile.mkdtemp(prefix="attestd-"))
        except OSError as err:
            raise ListenError(
                f"cannot create the agent's private directory: {err.strerror or err}"
            ) from err
        self.internal_dir, self._made_dir = directory, directory
        self.internal_socket = directory / INTERNAL_SOCKET_NAME
        if len(os.fsencode(self.internal_socket)) > MAX_UNIX_PATH_BYTES:
            raise ListenError(
                f"the agent's internal socket would be longer than {MAX_UNIX_PATH_BYTES} "
                f"bytes both in {private_dir} and in {directory}; use a shorter state_dir"
            )

    def bind(self) -> None:
        """Bind the public socket with the configured mode; it accepts nothing until :meth:`start`.

        It listens already, as gRPC's own listeners do once bound: a client
        that connects early waits in the kernel's backlog, and is dropped if
        the agent does not start. The caller has made sure that no other
        process listens on the path.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # no window where the socket is wider than 0600
        try:
            sock.bind(str(self.public_path))
            self._bound = True
        except OSError as err:
            sock.close()
            raise ListenError(
                f"cannot listen on the Unix socket {self.public_path}: {err.strerror}"
            ) from err
        finally:
            os.umask(old_umask)
        self._sock = sock
        try:
            os.chmod(self.public_path, self._mode)
        except OSError as err:
            mode_error = f"cannot set the mode of {self.public_path}: {err.strerror}"
            raise ListenError(mode_error) from err
        sock.listen(socket.SOMAXCONN)

    async def start(self) -> None:
        """Listen and accept on the public socket (after the gRPC server has started)."""
        if self._sock is None:
            raise ListenError("the pipeline socket was not bound")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(
            lambda: _Link(self).client,
            sock=self._sock,
            backlog=socket.SOMAXCONN,
            start_serving=False,
        )
        self._sock = None  # the server owns it now
        await self._server.start_serving()

    def stop_accepting(self) -> None:
        """Refuse new connections; relayed ones carry on until :meth:`close`."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Stop accepting, close every relayed connection, remove both sockets."""
        self.stop_accepting()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self._links):
            link.close()
        await asyncio.gather(*(link.done for link in list(self._unfinished)))
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._bound:
            self.public_path.unlink(missing_ok=True)
            self._bound = False
        if self.internal_dir is not None:
            self.internal_socket.unlink(missing_ok=True)
            self.internal_dir = None
        if self._made_dir is not None:
            try:
                self._made_dir.rmdir()
            except OSError as err:
                log.warning(
                    "cannot remove the private directory",
                    extra={"path": str(self._made_dir), "error": err.strerror},
                )
            self._made_dir = None

    @property
    def open_connections(self) -> int:
        """Relayed connections now open (or being opened)."""
        return len(self._links)

    def caller_of(self, peer: str) -> Caller:
        """The caller behind a gRPC call's ``context.peer()`` on the internal listener.

        Only an address this relay made for a connection still open is accepted;
        anything else raises :class:`PeerUnknownError`.
        """
        # One lookup of the whole address as the relay spelled it when binding: the
        # nonce, pid, uid and gid must all be the ones read, character for character.
        caller = self._callers.get(peer)
        if caller is None:
            raise PeerUnknownError("the call did not come through the agent's pipeline socket")
        return caller

    # -- the relay ---------------------------------------------------------------------

    def _forget(self, link: _Link) -> None:
        self._links.discard(link)
        if link.peer is not None:
            self._callers.pop(link.peer, None)

    def _finished(self, link: _Link) -> None:
        self._unfinished.discard(link)

    def _accepted(self, link: _Link) -> None:
        transport = link.client.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        try:
            caller = peer_credentials(sock)
        except OSError as err:
            log.warning(
                "refused a pipeline connection: no peer credentials", extra={"error": str(err)}
            )
            transport.abort()
            return
        refusal = self._policy.refusal(caller)
        if refusal is None and len(self._links) >= MAX_RELAYED_CONNECTIONS:
            refusal = f"{MAX_RELAYED_CONNECTIONS} pipeline connections are open already"
        if refusal is not None:
            log.warning(
                "refused a pipeline connection",
                extra={"pid": caller.pid, "uid": caller.uid, "gid": caller.gid, "why": refusal},
            )
            transport.abort()
            return
        self._links.add(link)
        self._unfinished.add(link)
        transport.pause_reading()  # until there is somewhere to send the bytes
        task = asyncio.get_running_loop().create_task(self._connect_upstream(link, caller))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect_upstream(self, link: _Link, caller: Caller) -> None:
        loop = asyncio.get_running_loop()
        nonce = secrets.token_hex(_NONCE_HEX // 2)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            address = f"{PEER_PREFIX}/{caller.pid}/{caller.uid}/{caller.gid}/{nonce}"
            sock.bind(f"\0{address}")
            # Known before connecting: the server may take a call as soon as it accepts.
            link.peer = f"unix-abstract:{address}"
            self._callers[link.peer] = caller
            await loop.sock_connect(sock, str(self.internal_socket))
            await loop.create_unix_connection(lambda: link.upstream, sock=sock)
        except BaseException as err:
            sock.close()
            link.close()
            if not isinstance(err, Exception):
                raise  # cancelled by close(): the link is closed, nothing to report
            # Nothing is raised to asyncio: it would only print "never retrieved".
            log.error(
                "cannot reach the agent's internal listener",
                extra={"path": str(self.internal_socket), "error": str(err)},
            )
            return
        if link.closed:  # the client left while we were connecting
            upstream = link.upstream.transport
            if upstream is not None:
                upstream.close()
            return
        client = link.client.transport
        assert client is not None
        client.resume_reading()
