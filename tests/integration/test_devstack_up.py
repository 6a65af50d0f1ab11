"""`python -m devstack up`: every stand-in on free ports, a settings file a worker can load, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from worker.config import Settings

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


async def test_up_writes_working_settings_and_stops_cleanly(tmp_path: Path) -> None:
    env_file = tmp_path / "devstack.env"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "devstack", "up", "--env-file", str(env_file),
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        async with asyncio.timeout(60):
            while not any("Ctrl-C to stop" in line for line in seen):
                line = (await proc.stdout.readline()).decode()
                assert line, "devstack exited early:\n" + "".join(seen)
                seen.append(line)
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
        assert settings.queue_config().connection_string is not None
        assert settings.storage_config().account_url.startswith("http://127.0.0.1:")
        assert settings.voicelive_config().endpoint.startswith("http://127.0.0.1:")
        ports = [
            urlsplit(settings.storage_config().account_url).port,
            urlsplit(settings.voicelive_config().endpoint).port,
            int(settings.queue_config().connection_string.get_secret_value().split(";")[0].rsplit(":", 1)[1]),
        ]
        policy = settings.blob_policy()
        assert (
            policy.check_input(f"{settings.storage_config().account_url}/audio-in/x.wav").container
            == "audio-in"
        )
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    assert not env_file.exists(), "the settings file is removed when the stack stops"
    for port in ports:  # Azurite (its own process group), the broker and the simulator are all gone
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
