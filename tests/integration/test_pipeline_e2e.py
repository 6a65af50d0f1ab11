"""One job end to end: real blob client ↔ Azurite, real Voice Live SDK ↔ simulator, every fixture."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from azure.core.credentials import AzureKeyCredential
from azure.storage.blob.aio import BlobServiceClient

from devstack.azurite import DEV_ACCOUNT, Azurite
from devstack.voicelive import CloseAfter, CloseKind, VoiceLiveSimulator
from worker.blobs import BlobPolicy, DevEndpoint
from worker.errors import Transient, UnsupportedAudio
from worker.jobs import Manifest, parse_job
from worker.pipeline import JobOutcome, Ports, process_job
from worker.storage import BlobArtifacts, BlobInput, blob_service_client
from worker.voice.connection import SdkVoiceConnector
from worker.voice.session import SessionOptions
from worker.voice.tools import ToolRegistry

pytestmark = pytest.mark.integration

AUDIO = Path(__file__).resolve().parents[2].parent / "shared" / "audio"
GOOD = [
    "hello_24k_mono.wav",
    "weather_44k1_stereo.wav",
    "booking_48k_stereo.mp3",
    "booking_48k_stereo.ogg",
    "booking_48k_stereo.opus",
    "booking_48k_stereo.flac",
    "booking_48k_stereo_faststart.m4a",
    "booking_48k_stereo.m4a",
    "support_8k_mulaw.wav",
    "float32_48k_mono.wav",
    "caller_3turns_16k.wav",
    "silence_5s_24k.wav",
    "noise_only_24k.wav",
]
# INDEX.md durations (s)
DURATION = {
    "hello_24k_mono.wav": 2.75, "weather_44k1_stereo.wav": 3.44, "booking_48k_stereo.mp3": 4.58,
    "booking_48k_stereo.ogg": 4.55, "booking_48k_stereo.opus": 4.55, "booking_48k_stereo.flac": 4.55,
    "booking_48k_stereo_faststart.m4a": 4.55, "booking_48k_stereo.m4a": 4.55, "support_8k_mulaw.wav": 4.42,
    "float32_48k_mono.wav": 3.84, "caller_3turns_16k.wav": 16.0, "silence_5s_24k.wav": 5.0,
    "noise_only_24k.wav": 4.0,
}  # fmt: skip
FAST = 8.0  # pace for tests that are not about pacing


class Harness:
    def __init__(self, azurite: Azurite, sim: VoiceLiveSimulator, client: BlobServiceClient) -> None:
        self.azurite, self.sim, self.client = azurite, sim, client
        self.policy = BlobPolicy(
            allowed_inputs=frozenset({(DEV_ACCOUNT, "audio-in")}),
            results=(azurite.blob_endpoint, DEV_ACCOUNT, "results"),
            dev_endpoints=(DevEndpoint.from_url(azurite.blob_endpoint),),
        )
        self.ports = Ports(
            inputs=BlobInput(client, max_bytes=50 * 2**20),
            artifacts=lambda ref: BlobArtifacts(client, ref),
            voice=SdkVoiceConnector(endpoint=sim.endpoint, credential=AzureKeyCredential("devstack-key")),
            tools=ToolRegistry.default(),
            model_default="gpt-realtime",
            session_options=SessionOptions(drain_window_s=0.3),
        )

    async def upload(self, path: Path) -> str:
        name = f"{uuid.uuid4().hex[:8]}/{path.name}"
        await self.client.get_blob_client("audio-in", name).upload_blob(path.read_bytes(), overwrite=True)
        return f"{self.azurite.blob_endpoint}/audio-in/{name}"

    def job(self, url: str, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"version": 1, "job_id": f"t-{uuid.uuid4().hex[:12]}", "input": {"url": url}}
        body["streaming"] = {"pace": FAST, "trailing_silence_ms": 1000} | fields.pop("streaming", {})
        return body | fields

    async def run(self, body: dict[str, Any]) -> JobOutcome:
        return await process_job(parse_job(json.dumps(body).encode(), policy=self.policy), self.ports)

    async def read(self, job_id: str, name: str) -> bytes:
        downloader = await self.client.get_blob_client("results", f"{job_id}/{name}").download_blob()
        return await downloader.readall()


@pytest_asyncio.fixture()
async def harness(azurite: Azurite, voicelive: VoiceLiveSimulator) -> AsyncIterator[Harness]:
    async with blob_service_client(account_url="", connection_string=azurite.connection_string) as client:
        yield Harness(azurite, voicelive, client)


async def assert_manifest_matches_blobs(h: Harness, manifest: Manifest) -> None:
    stored = Manifest.model_validate_json(await h.read(manifest.job_id, "manifest.json"))
    assert stored == manifest
    names = {a.name for a in manifest.artifacts}
    assert {"transcript.json", "transcript.vtt", "tool_calls.jsonl", "audio/conversation.wav"} <= names
    for artifact in manifest.artifacts:
        data = await h.read(manifest.job_id, artifact.name)
        assert (len(data), hashlib.sha256(data).hexdigest()) == (artifact.size, artifact.sha256), (
            artifact.name
        )


@pytest.mark.parametrize("name", GOOD)
async def test_every_good_fixture_succeeds(harness: Harness, name: str) -> None:
    outcome = await harness.run(harness.job(await harness.upload(AUDIO / name)))
    manifest = outcome.manifest
    assert manifest.status == "succeeded", manifest.error
    await assert_manifest_matches_blobs(harness, manifest)
    assert manifest.input.duration_s == pytest.approx(DURATION[name], abs=0.06)
    assert manifest.session.id
    assert manifest.metrics.audio_streamed_s is not None
    with wave.open(io.BytesIO(await harness.read(manifest.job_id, "audio/conversation.wav"))) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 24000)
        length_s = wav.getnframes() / 24000
    # input + trailing silence (1 s), rounded up to whole 20 ms frames
    assert length_s == pytest.approx(DURATION[name] + 1.0, abs=0.05)


async def test_three_turns_at_their_times_each_answered(harness: Harness) -> None:
    outcome = await harness.run(harness.job(await harness.upload(AUDIO / "caller_3turns_16k.wav")))
    transcript = json.loads(await harness.read(outcome.manifest.job_id, "transcript.json"))
    turns = transcript["user_turns"]
    expected = [(0.50, 3.05), (6.05, 9.12), (12.12, 14.00)]
    assert len(turns) == 3
    for turn, (start, end) in zip(turns, expected, strict=True):
        assert turn["start_ms"] / 1000 == pytest.approx(start, abs=0.15)
        assert turn["end_ms"] / 1000 == pytest.approx(end, abs=0.15)
        assert turn["response_ids"], "every turn gets a response"
    assert outcome.manifest.metrics.responses == 3
    vtt = (await harness.read(outcome.manifest.job_id, "transcript.vtt")).decode()
    assert vtt.startswith("WEBVTT")
    assert vtt.count("<v User>") == 3
    assert vtt.count("<v Assistant>") == 3


async def test_tool_calls_are_recorded(harness: Harness) -> None:
    body = harness.job(await harness.upload(AUDIO / "weather_44k1_stereo.wav"), tools=["get_weather"])
    outcome = await harness.run(body)
    assert outcome.manifest.metrics.tool_calls == 1
    lines = (await harness.read(outcome.manifest.job_id, "tool_calls.jsonl")).decode().splitlines()
    call = json.loads(lines[0])
    assert call["name"] == "get_weather"
    assert call["error"] is None
    assert "city" in json.loads(call["arguments"])
    transcript = json.loads(await harness.read(outcome.manifest.job_id, "transcript.json"))
    assert transcript["tool_calls"][0]["call_id"] == call["call_id"]
    assert any(r["trigger"] == "tool" for r in transcript["responses"])


@pytest.mark.parametrize("name", sorted(p.name for p in (AUDIO / "bad").iterdir()))
async def test_bad_audio_is_unsupported_with_failed_manifest(harness: Harness, name: str) -> None:
    body = harness.job(await harness.upload(AUDIO / "bad" / name))
    connections = len(harness.sim.connections)
    with pytest.raises(UnsupportedAudio) as caught:
        await harness.run(body)
    assert caught.value.detail
    assert len(harness.sim.connections) == connections, "undecodable input must not open a session"
    manifest = Manifest.model_validate_json(await harness.read(body["job_id"], "manifest.json"))
    assert (manifest.status, manifest.reason) == ("failed", "UnsupportedAudio")


async def test_truncated_mp3_succeeds_with_a_warning(harness: Harness) -> None:
    outcome = await harness.run(harness.job(await harness.upload(AUDIO / "quirks" / "truncated.mp3")))
    manifest = outcome.manifest
    assert manifest.status == "succeeded"
    assert manifest.input.duration_s == pytest.approx(1.80, abs=0.1)
    assert any("1.8" in w or "decoded" in w for w in manifest.warnings), manifest.warnings


async def test_wrong_extension_is_sniffed(harness: Harness) -> None:
    outcome = await harness.run(harness.job(await harness.upload(AUDIO / "quirks" / "wrong_extension.mp3")))
    assert outcome.manifest.status == "succeeded"
    assert outcome.manifest.input.codec == "flac"


@pytest.mark.parametrize("pace", [1.0, 4.0])
async def test_pace_sets_the_wire_time(harness: Harness, pace: float) -> None:
    before = len(harness.sim.connections)
    body = harness.job(
        await harness.upload(AUDIO / "hello_24k_mono.wav"), streaming={"pace": pace, "trailing_silence_ms": 0}
    )
    outcome = await harness.run(body)
    record = harness.sim.connections[before]
    span_s = record.append_times[-1] - record.append_times[0]
    expected_s = 2.75 / pace
    # Loose on purpose: the precise figures belong to bench/. This catches unpaced or mis-scaled sending.
    assert expected_s * 0.9 < span_s < expected_s * 1.5 + 0.2
    assert outcome.manifest.metrics.rtf == pytest.approx(pace, rel=0.25)


async def test_disconnect_mid_stream_is_transient_and_commits_nothing(harness: Harness) -> None:
    harness.sim.faults.next(CloseAfter(kind=CloseKind.DROP, appends=20))
    body = harness.job(await harness.upload(AUDIO / "hello_24k_mono.wav"))
    with pytest.raises(Transient):
        await harness.run(body)
    blobs = [b.name async for b in harness.client.get_container_client("results").list_blobs(
        name_starts_with=f"{body['job_id']}/")]  # fmt: skip
    assert "manifest.json" not in {b.split("/", 1)[1] for b in blobs}


async def test_second_run_is_a_no_op(harness: Harness) -> None:
    body = harness.job(await harness.upload(AUDIO / "hello_24k_mono.wav"))
    first = await harness.run(body)
    connections = len(harness.sim.connections)
    second = await harness.run(body)
    assert second.duplicate
    assert second.manifest == first.manifest
    assert len(harness.sim.connections) == connections, "a duplicate must not open a session"


@pytest.mark.parametrize(
    ("audio_format", "rate"), [("pcm16", 16000), ("pcm16", 8000), ("g711_ulaw", 8000), ("g711_alaw", 8000)]
)
async def test_session_input_formats_find_the_same_turns(
    harness: Harness, audio_format: str, rate: int
) -> None:
    body = harness.job(await harness.upload(AUDIO / "caller_3turns_16k.wav"),
                       streaming={"audio_format": audio_format, "sample_rate": rate})  # fmt: skip
    outcome = await harness.run(body)
    record = harness.sim.connections[-1]
    assert record.session["input_audio_format"] == audio_format
    transcript = json.loads(await harness.read(outcome.manifest.job_id, "transcript.json"))
    starts = [t["start_ms"] / 1000 for t in transcript["user_turns"]]
    assert starts == pytest.approx([0.50, 6.05, 12.12], abs=0.15)
    with wave.open(io.BytesIO(await harness.read(outcome.manifest.job_id, "audio/conversation.wav"))) as wav:
        assert wav.getnframes() / 24000 == pytest.approx(16.0 + 1.0, abs=0.05)


async def test_manual_turns_commit_each_utterance(harness: Harness) -> None:
    body = harness.job(
        await harness.upload(AUDIO / "caller_3turns_16k.wav"), session={"turn_detection": None}
    )
    outcome = await harness.run(body)
    record = harness.sim.connections[-1]
    assert record.session["turn_detection"] is None
    assert record.received.count("input_audio_buffer.commit") == 3
    transcript = json.loads(await harness.read(outcome.manifest.job_id, "transcript.json"))
    assert [t["source"] for t in transcript["user_turns"]] == ["manual"] * 3
    assert all(t["response_ids"] for t in transcript["user_turns"])


async def test_process_command_writes_a_local_directory(
    voicelive: VoiceLiveSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from worker.cli import app

    monkeypatch.setenv("VOICELIVE_ENDPOINT", voicelive.endpoint)
    monkeypatch.setenv("VOICELIVE_API_KEY", "devstack-key")
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps({"version": 1, "job_id": "cli-1", "input": {"url": "x"},
                                    "streaming": {"pace": FAST}}))  # fmt: skip
    # CliRunner runs the command's own event loop: do it in a thread, away from the test's loop.
    result = await asyncio.to_thread(
        CliRunner().invoke, app,
        ["process", str(AUDIO / "hello_24k_mono.wav"), "--job", str(job_file), "--out", str(tmp_path / "out"),
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = Manifest.model_validate_json(result.stdout)
    assert (manifest.job_id, manifest.status) == ("cli-1", "succeeded")
    assert manifest.input.url.startswith("file:///")
    for artifact in manifest.artifacts:
        data = (tmp_path / "out" / artifact.name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
    out = str(tmp_path / "out")
    args = ["process", str(AUDIO / "hello_24k_mono.wav"), "--job", str(job_file), "--out", out]
    again = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert again.exit_code == 0, "a second run of a succeeded job is a no-op, not an error"
