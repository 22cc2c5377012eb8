"""The simulated TD's registers on disk: in-place records, crashes, other processes, migration."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from attestd.tee.errors import DeviceError
from attestd.tee.tdx import _simulated_registers as registers_file
from attestd.tee.tdx.abi import parse_quote
from attestd.tee.tdx.simulated import (
    MEASUREMENT_DEFAULTS,
    SimulatedTdMeasurements,
    SimulatedTdxBackend,
)

NONCE = bytes(range(64))
RTMR3_OFFSET = registers_file.RECORD_SIZE * 5  # after the header, mr_td, rtmr0..rtmr2


def state_of(tmp_path: Path) -> Path:
    return tmp_path / "tee" / "simulated-tdx"


def replay(digests: list[bytes]) -> list[bytes]:
    """The register after 0, 1, ... len(digests) extensions from zero."""
    values = [bytes(48)]
    for digest in digests:
        values.append(hashlib.sha384(values[-1] + digest).digest())
    return values


DIGESTS = [hashlib.sha384(b"event %d" % i).digest() for i in range(4000)]

# A process that extends RTMR3 by DIGESTS in order (or, given a third argument,
# always by the digest of that argument) and acknowledges each extension (one
# line on stdout) only after extend_runtime_register returned.
_EXTENDER = """
import hashlib, sys
from pathlib import Path
from attestd.tee.tdx.simulated import SimulatedTdxBackend
backend = SimulatedTdxBackend.open(Path(sys.argv[1]))
same = sys.argv[3].encode() if len(sys.argv) > 3 else None
for i in range(int(sys.argv[2])):
    backend.extend_runtime_register(hashlib.sha384(same or b"event %d" % i).digest())
    sys.stdout.write(f"{i + 1}\\n")
    sys.stdout.flush()
"""

_READER = """
import sys
from pathlib import Path
from attestd.tee.tdx.simulated import SimulatedTdxBackend
print(SimulatedTdxBackend.open(Path(sys.argv[1])).read_runtime_register().hex())
"""


def _python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    )


def test_the_layout_names_every_measurement_at_its_width() -> None:
    assert dict(registers_file.FIELDS) == {k: len(v) for k, v in MEASUREMENT_DEFAULTS.items()}
    assert registers_file.FILE_SIZE == 832 <= 4096  # one page: a record never spans two


def test_an_extension_rewrites_only_its_record_in_place(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    path = state_of(tmp_path) / "registers.bin"
    before, inode = path.read_bytes(), path.stat().st_ino
    backend.extend_runtime_register(DIGESTS[0])
    after = path.read_bytes()
    record = slice(RTMR3_OFFSET, RTMR3_OFFSET + registers_file.RECORD_SIZE)
    assert after[record] == registers_file.record("rtmr3", replay(DIGESTS[:1])[1])
    assert (
        after[: record.start] + after[record.stop :]
        == before[: record.start] + before[record.stop :]
    )
    SimulatedTdxBackend.open(tmp_path, SimulatedTdMeasurements(rtmr0=bytes(range(48))))
    assert path.stat().st_ino == inode  # reopening writes in place too: every fd stays valid
    assert backend.rtmrs()[0] == bytes(range(48))


@pytest.mark.parametrize("at", [RTMR3_OFFSET, RTMR3_OFFSET + 47, RTMR3_OFFSET + 50, 64 * 9 + 10])
def test_a_damaged_record_is_refused_by_name(tmp_path: Path, at: int) -> None:
    """A flipped byte in a value, its tag, or a short field's zero padding."""
    backend = SimulatedTdxBackend.open(tmp_path)
    path = state_of(tmp_path) / "registers.bin"
    data = bytearray(path.read_bytes())
    data[at] ^= 1
    path.write_bytes(bytes(data))
    for call in (backend.read_runtime_register, lambda: backend.get_quote(NONCE)):
        with pytest.raises(registers_file.SimulatedRegistersDamagedError) as refused:
            call()
        assert refused.value.reason == "simulated_registers_damaged"
    with pytest.raises(registers_file.SimulatedRegistersDamagedError, match="is damaged"):
        SimulatedTdxBackend.open(tmp_path)


def test_a_cut_file_is_damaged_and_another_version_is_refused_not_guessed(tmp_path: Path) -> None:
    SimulatedTdxBackend.open(tmp_path)
    path = state_of(tmp_path) / "registers.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    with pytest.raises(registers_file.SimulatedRegistersDamagedError, match="831 bytes"):
        SimulatedTdxBackend.open(tmp_path)
    path.write_bytes(data.replace(b"registers/2\n", b"registers/3\n", 1))
    with pytest.raises(registers_file.SimulatedRegistersFormatError) as refused:
        SimulatedTdxBackend.open(tmp_path)
    assert refused.value.reason == "simulated_registers_format_unknown"
    assert isinstance(refused.value, DeviceError)


def _legacy_document(values: dict[str, bytes]) -> str:
    registers = {name: value.hex() for name, value in values.items()}
    return json.dumps({"format": "attestd-simulated-tdx-registers/1", "registers": registers})


def test_registers_json_of_an_older_attestd_is_converted(tmp_path: Path) -> None:
    SimulatedTdxBackend.open(tmp_path)
    state = state_of(tmp_path)
    (state / "registers.bin").unlink()  # as an older attestd left it: PKI and registers.json
    old = dict(MEASUREMENT_DEFAULTS, rtmr3=replay(DIGESTS[:3])[3], mr_td=bytes(range(48)))
    (state / "registers.json").write_text(_legacy_document(old))
    rtmr1 = hashlib.sha384(b"imposed while converting").digest()
    backend = SimulatedTdxBackend.open(tmp_path, SimulatedTdMeasurements(rtmr1=rtmr1))
    assert not (state / "registers.json").exists()
    body = parse_quote(backend.get_quote(NONCE)).body
    assert (body.mr_td, body.rtmrs[1], body.rtmrs[3]) == (old["mr_td"], rtmr1, old["rtmr3"])
    backend.extend_runtime_register(DIGESTS[3])
    assert SimulatedTdxBackend.open(tmp_path).read_runtime_register() == replay(DIGESTS[:4])[4]


def test_a_conversion_cut_short_keeps_the_binary_file(tmp_path: Path) -> None:
    """registers.bin is renamed into place whole before registers.json is removed."""
    backend = SimulatedTdxBackend.open(tmp_path)
    backend.extend_runtime_register(DIGESTS[0])
    stale = _legacy_document(dict(MEASUREMENT_DEFAULTS))
    (state_of(tmp_path) / "registers.json").write_text(stale)
    assert SimulatedTdxBackend.open(tmp_path).read_runtime_register() == replay(DIGESTS[:1])[1]
    assert not (state_of(tmp_path) / "registers.json").exists()


@pytest.mark.parametrize(
    "damage",
    ["not json", '{"format": "other", "registers": {}}', '{"format": 1}'],
)
def test_a_damaged_registers_json_is_refused_not_converted(tmp_path: Path, damage: str) -> None:
    SimulatedTdxBackend.open(tmp_path)
    (state_of(tmp_path) / "registers.bin").unlink()
    (state_of(tmp_path) / "registers.json").write_text(damage)
    with pytest.raises(registers_file.SimulatedRegistersDamagedError, match=r"registers\.json"):
        SimulatedTdxBackend.open(tmp_path)
    assert not (state_of(tmp_path) / "registers.bin").exists()


def test_another_process_reads_and_extends_the_same_registers(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    backend.extend_runtime_register(DIGESTS[0])
    reader = _python(_READER, str(tmp_path))
    assert reader.communicate(timeout=60)[0].strip() == replay(DIGESTS[:1])[1].hex()

    # A process extending while this one's threads extend: the lock orders them all,
    # and with one digest every order ends at the same value, so nothing may be lost.
    child = _python(_EXTENDER, str(tmp_path), "200", "same")
    same = hashlib.sha384(b"same").digest()
    workers = [
        threading.Thread(target=lambda: [backend.extend_runtime_register(same) for _ in range(50)])
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert child.communicate(timeout=60)[0].split()[-1] == "200"
    expected = replay(DIGESTS[:1])[1]
    for _ in range(300):
        expected = hashlib.sha384(expected + same).digest()
    assert backend.read_runtime_register() == expected
    assert SimulatedTdxBackend.open(tmp_path).read_runtime_register() == expected


@pytest.mark.parametrize("run", range(6))
def test_a_sigkilled_extender_leaves_the_replay_of_what_it_acknowledged(
    tmp_path: Path, run: int
) -> None:
    """Killed at a random moment: the register is the replay of every acknowledged
    extension, plus at most the one in flight, and is never torn."""
    SimulatedTdxBackend.open(tmp_path)
    # The extender never runs out of digests before the kill, however fast the machine:
    # it would take it hours to ack this many (and a full pipe only pauses it).
    child = _python(_EXTENDER, str(tmp_path), str(10**9))
    assert child.stdout is not None
    first = child.stdout.readline()
    assert first == "1\n"
    threading.Event().wait(random.Random(run).uniform(0.0, 0.05))
    os.kill(child.pid, signal.SIGKILL)
    rest = child.communicate(timeout=60)[0].split()
    assert child.returncode == -signal.SIGKILL
    acknowledged = int(rest[-1]) if rest else 1
    digests = [hashlib.sha384(b"event %d" % i).digest() for i in range(acknowledged + 1)]
    register = SimulatedTdxBackend.open(tmp_path).read_runtime_register()
    assert register in replay(digests)[acknowledged:]


def test_a_quote_sees_every_extension_that_returned_before_it(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    other = SimulatedTdxBackend.open(tmp_path)  # another opening, as an agent's quoting thread
    returned = 0
    done = threading.Event()

    def extend() -> None:
        nonlocal returned
        for digest in DIGESTS[:300]:
            backend.extend_runtime_register(digest)
            returned += 1
        done.set()

    values = replay(DIGESTS[:300])
    extender = threading.Thread(target=extend)
    extender.start()
    quotes = 0
    while not done.is_set() or quotes == 0:
        before = returned
        rtmr3 = parse_quote(other.get_quote(NONCE)).body.rtmrs[3]
        assert rtmr3 in values[before : returned + 2]
        quotes += 1
    extender.join()
    assert other.read_runtime_register() == values[300]


def test_a_batch_of_extensions_is_written_once_and_seen_only_whole(tmp_path: Path) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    other = SimulatedTdxBackend.open(tmp_path)  # another opening, as an agent's quoting thread
    values = replay(DIGESTS[:50])
    backend.extend_runtime_register(DIGESTS[0])
    seen: list[bytes] = []
    with backend.runtime_register_batch():
        reader = threading.Thread(target=lambda: seen.append(other.read_runtime_register()))
        for digest in DIGESTS[1:50]:
            backend.extend_runtime_register(digest)
        reader.start()
        reader.join(0.2)
        assert reader.is_alive()  # a reader waits for the batch: it never sees a value between
    reader.join(10)
    assert seen == [values[50]]
    assert backend.read_runtime_register() == values[50]
    path = state_of(tmp_path) / "registers.bin"
    raw = path.read_bytes()[RTMR3_OFFSET : RTMR3_OFFSET + registers_file.RECORD_SIZE]
    assert raw == registers_file.record("rtmr3", values[50])


def test_a_batch_that_cannot_write_raises_and_leaves_the_register_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SimulatedTdxBackend.open(tmp_path)
    backend.extend_runtime_register(DIGESTS[0])

    def broken(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    refused = pytest.raises(DeviceError, match="cannot write simulated TDX register rtmr3")
    with refused, backend.runtime_register_batch():
        for digest in DIGESTS[1:5]:
            backend.extend_runtime_register(digest)
        monkeypatch.setattr(os, "pwrite", broken)
    monkeypatch.undo()
    assert backend.read_runtime_register() == replay(DIGESTS[:1])[1]
    backend.extend_runtime_register(DIGESTS[1])  # the device is free again, outside any batch
    assert backend.read_runtime_register() == replay(DIGESTS[:2])[2]
