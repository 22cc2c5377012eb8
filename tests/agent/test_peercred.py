"""The peer-credential relay on its own: who is let in, what it relays, how it stops.

The upstream here is a plain asyncio server standing in for gRPC: it answers
each connection with the address the relay bound (what gRPC reports as the
call's peer), then echoes. tests/agent/test_grpc_peercred.py runs the agent.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from attestd.agent.errors import ListenError
from attestd.agent.peercred import (
    RELAY_BUFFER_BYTES,
    Caller,
    CallerPolicy,
    PeerRelay,
    PeerUnknownError,
    peer_credentials,
)

ME = Caller(os.getpid(), os.getuid(), os.getgid())
NOBODY = 65534


def _private(parent: Path) -> Path:
    """A 0700 directory for the internal socket, as the state directory is."""
    private = parent / "state"
    private.mkdir(mode=0o700, exist_ok=True)
    private.chmod(0o700)
    return private


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory any user may enter (tmp_path is 0700 and its paths are long)."""
    directory = Path(tempfile.mkdtemp(prefix="pc-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Say who the relay said the caller is, then echo until EOF."""
    peer = writer.get_extra_info("peername")  # bytes: an abstract address starts with NUL
    writer.write((peer if isinstance(peer, bytes) else peer.encode()) + b"\n")
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    finally:
        writer.close()


ANYONE = CallerPolicy()


@asynccontextmanager
async def relay_running(
    socket_dir: Path,
    policy: CallerPolicy = ANYONE,
    upstream: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] = _upstream,
) -> AsyncIterator[PeerRelay]:
    relay = PeerRelay(socket_dir / "a.sock", 0o666, policy)
    relay.prepare_internal(_private(socket_dir))
    server = await asyncio.start_unix_server(upstream, path=str(relay.internal_socket))
    relay.bind()
    await relay.start()
    try:
        yield relay
    finally:
        await relay.close()
        server.close()
        await server.wait_closed()


async def _connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path))


def _peer_of(relay: PeerRelay, line: bytes) -> str:
    """The gRPC spelling of the upstream's peer address."""
    text = line.decode().rstrip("\n")
    assert text.startswith("\0")
    return "unix-abstract:" + text[1:]


def test_the_relay_names_the_connecting_process_from_the_kernel(socket_dir: Path) -> None:
    async def run() -> None:
        async with relay_running(socket_dir) as relay:
            reader, writer = await _connect(relay.public_path)
            peer = _peer_of(relay, await reader.readline())
            assert relay.caller_of(peer) == ME
            assert peer.startswith(f"unix-abstract:attestd-peer/{ME.pid}/{ME.uid}/{ME.gid}/")
            writer.write(b"hello")
            assert await reader.readexactly(5) == b"hello"
            writer.close()
            await writer.wait_closed()

    asyncio.run(run())


def test_an_address_the_relay_did_not_make_names_no_caller(socket_dir: Path) -> None:
    async def run() -> None:
        async with relay_running(socket_dir) as relay:
            reader, writer = await _connect(relay.public_path)
            peer = _peer_of(relay, await reader.readline())
            nonce = peer.rsplit("/", 1)[1]
            forged = [
                "unix:",  # straight to the internal socket
                "unix-abstract:",
                f"unix-abstract:attestd-peer/1/0/0/{nonce}",  # the live nonce, other ids
                f"unix-abstract:attestd-peer/{ME.pid}/{ME.uid}/{ME.gid}/{'0' * 32}",
                f"unix-abstract:attestd-peer/{ME.pid}/{ME.uid}/{ME.gid}/{nonce.upper()}",
                f"unix-abstract:attestd-peer/0{ME.pid}/{ME.uid}/{ME.gid}/{nonce}",
                f"{peer}\n",
                f"unix:{peer[len('unix-abstract:') :]}",
                "ipv4:127.0.0.1:4242",
            ]
            for address in forged:
                with pytest.raises(PeerUnknownError) as refused:
                    relay.caller_of(address)
                assert refused.value.reason == "peer_unknown"
            writer.close()
            await writer.wait_closed()
            await _until(lambda: relay.open_connections == 0)
            with pytest.raises(PeerUnknownError):
                relay.caller_of(peer)  # the connection is gone, and its address with it

    asyncio.run(run())


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


async def _refused(relay: PeerRelay) -> bool:
    """Whether the relay closed our connection without relaying anything."""
    reader, writer = await _connect(relay.public_path)
    try:
        return await asyncio.wait_for(reader.read(1), 5) == b""
    except ConnectionResetError:
        return True
    finally:
        writer.close()


@pytest.mark.parametrize(
    "policy",
    [
        CallerPolicy(uids=frozenset({ME.uid + 1})),
        CallerPolicy(gids=frozenset({ME.gid + 1})),
        CallerPolicy(uids=frozenset({ME.uid}), gids=frozenset({ME.gid + 1})),
        CallerPolicy(uids=frozenset({ME.uid + 1}), gids=frozenset({ME.gid})),
    ],
)
def test_a_peer_not_on_every_allow_list_is_refused_and_logged(
    socket_dir: Path, policy: CallerPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        async with relay_running(socket_dir, policy) as relay:
            assert await _refused(relay)
            assert relay.open_connections == 0

    asyncio.run(run())
    [record] = [r for r in caplog.records if r.getMessage() == "refused a pipeline connection"]
    assert (record.pid, record.uid, record.gid) == (ME.pid, ME.uid, ME.gid)  # type: ignore[attr-defined]
    assert "allowed_" in record.why  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "policy",
    [
        CallerPolicy(),
        CallerPolicy(uids=frozenset({ME.uid})),
        CallerPolicy(gids=frozenset({ME.gid, ME.gid + 1})),
        CallerPolicy(uids=frozenset({ME.uid, 7}), gids=frozenset({ME.gid})),
    ],
)
def test_a_peer_on_every_allow_list_is_relayed(socket_dir: Path, policy: CallerPolicy) -> None:
    async def run() -> None:
        async with relay_running(socket_dir, policy) as relay:
            reader, writer = await _connect(relay.public_path)
            assert relay.caller_of(_peer_of(relay, await reader.readline())) == ME
            writer.close()

    asyncio.run(run())


def _as_nobody(path: Path) -> tuple[int, bytes]:
    """Fork a child that drops to uid/gid 65534 and reads what the relay sends it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain sockets only, then _exit (never back into pytest)
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                try:
                    line = sock.makefile("rb").readline()
                except ConnectionResetError:
                    line = b""
            os.write(write_end, line)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return pid, answer


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_another_user_is_refused_or_named_by_its_own_ids(socket_dir: Path) -> None:
    async def run(policy: CallerPolicy) -> tuple[int, bytes, PeerRelay]:
        async with relay_running(socket_dir, policy) as relay:
            pid, answer = await asyncio.to_thread(_as_nobody, relay.public_path)
            return pid, answer, relay

    _, answer, _ = asyncio.run(run(CallerPolicy(uids=frozenset({0}))))
    assert answer == b""  # refused: root only

    pid, answer, _ = asyncio.run(run(CallerPolicy(uids=frozenset({NOBODY}))))
    assert answer.decode().rstrip("\n").startswith(f"\0attestd-peer/{pid}/{NOBODY}/{NOBODY}/")


def test_peer_credentials_of_a_socketpair_are_this_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        assert peer_credentials(left) == ME


def test_a_half_close_is_passed_on_and_the_answer_still_arrives(socket_dir: Path) -> None:
    async def run() -> None:
        async with relay_running(socket_dir) as relay:
            reader, writer = await _connect(relay.public_path)
            await reader.readline()
            writer.write(b"last words")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b"last words"  # then EOF
            writer.close()
            await _until(lambda: relay.open_connections == 0)

    asyncio.run(run())


def test_a_slow_reader_pauses_its_writer_within_the_buffer_bound(socket_dir: Path) -> None:
    release = asyncio.Event()

    async def stalled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()  # reads nothing until released
        total = 0
        while data := await reader.read(1 << 20):
            total += len(data)
        writer.write(str(total).encode())
        await writer.drain()
        writer.close()

    async def run() -> None:
        async with relay_running(socket_dir, upstream=stalled) as relay:
            reader, writer = await _connect(relay.public_path)
            sent = 0
            chunk = b"x" * (1 << 20)
            # Far more than the kernel's socket buffers and the relay's bound together.
            while sent < 64 << 20:
                writer.write(chunk)
                sent += len(chunk)
                try:
                    await asyncio.wait_for(writer.drain(), 0.5)
                except TimeoutError:
                    break  # backpressure reached us: the relay stopped reading
            else:
                pytest.fail("the writer was never paused")
            [link] = list(relay._links)
            upstream = link.upstream.transport
            client = link.client.transport
            assert upstream is not None and client is not None
            # At most the high-water mark plus one read of asyncio's (256 KiB).
            assert upstream.get_write_buffer_size() <= RELAY_BUFFER_BYTES + (256 << 10)
            assert not client.is_reading()
            release.set()
            await writer.drain()
            writer.write_eof()
            assert int(await asyncio.wait_for(reader.read(), 30)) == sent
            writer.close()

    asyncio.run(run())


def test_close_ends_every_connection_and_leaves_no_task_or_socket(socket_dir: Path) -> None:
    async def run() -> None:
        before = asyncio.all_tasks()
        relay_ctx = relay_running(socket_dir)
        relay = await relay_ctx.__aenter__()
        internal_socket = relay.internal_socket
        assert internal_socket == socket_dir / "state" / "grpc.sock"
        assert internal_socket.is_socket()
        assert stat.S_IMODE(relay.public_path.stat().st_mode) == 0o666
        clients = [await _connect(relay.public_path) for _ in range(5)]
        for reader, _ in clients:
            await reader.readline()
        assert relay.open_connections == 5
        await relay_ctx.__aexit__(None, None, None)
        for reader, writer in clients:
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the relay
            writer.close()
        assert relay.open_connections == 0
        assert not relay.public_path.exists()
        assert not internal_socket.exists()
        assert (socket_dir / "state").is_dir()  # the state directory is not the relay's
        await asyncio.sleep(0)
        assert asyncio.all_tasks() - before == set()
        with pytest.raises(OSError):
            await _connect(relay.public_path)

    asyncio.run(run())


def test_an_unreachable_upstream_closes_the_client(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> None:
        relay = PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy())
        relay.prepare_internal(_private(socket_dir))  # nothing listens inside
        relay.bind()
        await relay.start()
        try:
            assert await _refused(relay)
            await _until(lambda: relay.open_connections == 0)
        finally:
            await relay.close()

    asyncio.run(run())
    assert any(
        r.getMessage() == "cannot reach the agent's internal listener" for r in caplog.records
    )


def test_connections_past_the_limit_are_refused(
    socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("attestd.agent.peercred.MAX_RELAYED_CONNECTIONS", 2)

    async def run() -> None:
        async with relay_running(socket_dir) as relay:
            kept = [await _connect(relay.public_path) for _ in range(2)]
            for reader, _ in kept:
                await reader.readline()
            assert await _refused(relay)
            kept[0][1].close()
            await _until(lambda: relay.open_connections == 1)
            reader, writer = await _connect(relay.public_path)
            assert (await reader.readline()).startswith(b"\0attestd-peer/")
            for _, w in [*kept, (reader, writer)]:
                w.close()

    asyncio.run(run())


def test_a_state_directory_too_deep_for_a_socket_path_falls_back_to_a_temporary_one(
    socket_dir: Path,
) -> None:
    deep = socket_dir / ("d" * 100)
    deep.mkdir(mode=0o700)
    relay = PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy())
    relay.prepare_internal(deep)
    made = relay.internal_dir
    assert made is not None and made.parent == Path(tempfile.gettempdir())
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    asyncio.run(relay.close())
    assert not made.exists()


def test_no_short_enough_directory_is_a_listen_error(
    socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    deep = socket_dir / ("d" * 100)
    deep.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    relay = PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy())
    with pytest.raises(ListenError, match="longer than 107 bytes"):
        relay.prepare_internal(deep)
    asyncio.run(relay.close())
    assert list(deep.iterdir()) == []  # the directory it made is gone again


def test_a_stale_internal_socket_is_replaced_and_anything_else_refused(socket_dir: Path) -> None:
    private = _private(socket_dir)
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(private / "grpc.sock"))  # left by a killed agent
    PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy()).prepare_internal(private)
    assert not (private / "grpc.sock").exists()

    (private / "grpc.sock").write_text("not a socket")
    with pytest.raises(ListenError, match="is not a socket"):
        PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy()).prepare_internal(private)
    assert (private / "grpc.sock").read_text() == "not a socket"


@pytest.mark.parametrize("mode", [0o750, 0o701, 0o707])
def test_a_directory_others_may_enter_is_refused_for_the_internal_socket(
    socket_dir: Path, mode: int
) -> None:
    private = _private(socket_dir)
    private.chmod(mode)
    with pytest.raises(ListenError, match="mode 0700"):
        PeerRelay(socket_dir / "a.sock", 0o600, CallerPolicy()).prepare_internal(private)
