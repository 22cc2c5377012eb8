"""Without CuPy, a CUDA device or a driver, GPU hashing refuses clearly and never uses the CPU."""

from __future__ import annotations

import sys
import types

import pytest

from attestd.agent.artifacts.gpu import (
    GpuUnavailableError,
    cuda,
    measure_loaded_tensors,
    reference,
)


def _fake_cupy(monkeypatch: pytest.MonkeyPatch, device_count: object) -> None:
    def count() -> int:
        if isinstance(device_count, Exception):
            raise device_count
        assert isinstance(device_count, int)
        return device_count

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cupy", fake)


@pytest.fixture(autouse=True)
def _no_cpu_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any hashing on the CPU would be a silent fallback: make it fail loudly."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("hashed on the CPU instead of refusing")

    monkeypatch.setattr(reference, "compress", refuse)
    monkeypatch.setattr(reference, "chunk_output", refuse)


def test_missing_cupy_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ImportError
    with pytest.raises(GpuUnavailableError, match="CuPy is not installed") as caught:
        cuda.blake3(b"model bytes")
    assert caught.value.missing == "cupy"
    assert caught.value.reason == "gpu_unavailable"
    assert "attestd[gpu]" in str(caught.value)
    assert not cuda.available()
    with pytest.raises(GpuUnavailableError, match="CuPy is not installed"):
        cuda.require()


def test_no_cuda_device_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cupy(monkeypatch, 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(GpuUnavailableError, match="no CUDA device is visible") as caught:
        cuda.blake3_pieces([(b"header", 0, 6)])
    assert caught.value.missing == "device"
    assert "CUDA_VISIBLE_DEVICES=''" in str(caught.value)


def test_driver_error_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_cupy(monkeypatch, RuntimeError("cudaErrorInsufficientDriver"))
    with pytest.raises(GpuUnavailableError, match="CUDA driver cannot be used") as caught:
        cuda.blake3(b"x")
    assert caught.value.missing == "driver"
    assert "cudaErrorInsufficientDriver" in str(caught.value)


def test_file_hashing_refuses_too(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(GpuUnavailableError):
        cuda.blake3_file(__file__)


class _RecordingAgent:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes]] = []

    def record(self, domain: str, operation: str, content: bytes) -> None:
        self.events.append((domain, operation, content))


def test_serving_measurement_without_a_gpu_records_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)
    agent = _RecordingAgent()
    tensors = {"w": types.SimpleNamespace(dtype="float32", shape=(16,), nbytes=64)}
    with pytest.raises(GpuUnavailableError):
        measure_loaded_tensors(tensors, agent=agent, name="model")  # type: ignore[arg-type]
    assert agent.events == []
