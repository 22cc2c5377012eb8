"""Fixtures: one simulated TD per module, and a policy that trusts it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attestd.verifier.policy import Policy
from tests.verifier.simulated_evidence import Scenario, make_scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    yield make_scenario(tmp_path_factory.mktemp("td"))


@pytest.fixture
def policy(scenario: Scenario, tmp_path: Path) -> Policy:
    return scenario.policy(tmp_path)
