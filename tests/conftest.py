"""Shared fixtures: the devstack stand-ins, started once per test session on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from devstack.azurite import Azurite
from devstack.voicelive import Mode, VoiceLiveSimulator

REPO = Path(__file__).resolve().parents[1]
SHARED_AUDIO = REPO.parent / "shared" / "audio"
SAMPLES = REPO / "samples"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Commands under test call `configure_logging`, which replaces the root handlers with one bound to
    the CliRunner's (soon closed) stderr; put the root logger back after every test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests see only the settings they set: no developer .env, no Azure variables from the machine."""
    for key in list(os.environ):
        if key.startswith(("SERVICEBUS_", "STORAGE_", "VOICELIVE_", "APPLICATIONINSIGHTS_", "AZURE_")):
            monkeypatch.delenv(key, raising=False)
    from worker.config import Settings

    monkeypatch.setitem(Settings.model_config, "env_file", None)  # no developer .env leaks in
    return


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def azurite() -> AsyncIterator[Azurite]:
    """One Azurite for the whole session (in memory, telemetry off), with the dev containers."""
    async with Azurite(containers=("audio-in", "results")) as server:
        yield server


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def voicelive_sim() -> AsyncIterator[VoiceLiveSimulator]:
    """One Voice Live simulator for the session: zero-latency responses, no connect-rate limit.
    Tests that inject faults must clear them (`sim.faults.clear()`) — use the `voicelive` fixture."""
    async with VoiceLiveSimulator(mode=Mode.ZERO_LATENCY, connects_per_minute=None) as sim:
        yield sim


@pytest.fixture
def voicelive(voicelive_sim: VoiceLiveSimulator) -> Iterator[VoiceLiveSimulator]:
    voicelive_sim.faults.clear()
    yield voicelive_sim
    voicelive_sim.faults.clear()
