"""What the framework integrations' tests share: one real agent per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import AgentProcess, serving


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    """An agent on simulated TDX that the module's pipeline runs record into."""
    yield from serving(AgentProcess(tmp_path_factory.mktemp("agent")))
