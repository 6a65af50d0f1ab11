"""Job v1 parsing: every malformed or hostile message ends as exactly the right reason code."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.blobs import BlobPolicy, DevEndpoint
from worker.errors import Permanent, Reason
from worker.jobs import MAX_MESSAGE_BYTES, parse_job

ACCT = "https://acct.blob.core.windows.net"
GOOD_IN = f"{ACCT}/audio-in/calls/123.mp3"
POLICY = BlobPolicy(
    allowed_inputs=frozenset({("acct", "audio-in"), ("other", "*")}),
    allowed_outputs=frozenset({("acct", "exports")}),
    results=(ACCT, "acct", "results"),
    dev_endpoints=(DevEndpoint.from_url("http://127.0.0.1:10000/devstoreaccount1"),),
)


def job(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"version": 1, "job_id": "call-1", "input": {"url": GOOD_IN}}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not DROP}


DROP = object()


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_minimal_job_gets_defaults_and_default_output() -> None:
    parsed = parse_job(encode(job()), policy=POLICY)
    assert parsed.job.streaming.pace == 1.0
    assert parsed.job.streaming.frame_ms == 20
    assert parsed.job.session.turn_detection is not None
    assert (parsed.input.account, parsed.input.container, parsed.input.name) == (
        "acct",
        "audio-in",
        "calls/123.mp3",
    )
    assert parsed.output.url == f"{ACCT}/results/call-1/"


def test_full_design_example_is_valid() -> None:
    body = {
        "version": 1,
        "job_id": "call-2026-11-24-000123",
        "input": {"url": GOOD_IN},
        "output": {"url": f"{ACCT}/results/calls/123/"},
        "session": {
            "model": "gpt-realtime",
            "instructions": "You are a helpful agent.",
            "voice": "alloy",
            "modalities": ["text", "audio"],
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 500},
            "input_audio_transcription": {"model": "azure-speech", "language": "en-US"},
        },
        "conversation": [{"role": "system", "text": "The caller is a premium customer."}],
        "tools": ["get_weather"],
        "streaming": {
            "pace": 1.0,
            "frame_ms": 20,
            "sample_rate": 24000,
            "channel": "mix",
            "trailing_silence_ms": 2000,
            "response_timeout_s": 30,
        },
        "outputs": {"response_audio": True, "conversation_audio": True, "events": False},
        "metadata": {"tenant": "contoso"},
    }
    parsed = parse_job(encode(body), policy=POLICY)
    assert parsed.output.name == "calls/123/"
    assert parsed.job.tools == ["get_weather"]


def test_null_turn_detection_selects_manual_turns() -> None:
    parsed = parse_job(encode(job(session={"turn_detection": None})), policy=POLICY)
    assert parsed.job.session.manual_turns


def test_dev_endpoint_is_path_style() -> None:
    url = "http://127.0.0.1:10000/devstoreaccount1/audio-in/a.wav"
    policy = BlobPolicy(
        allowed_inputs=frozenset({("devstoreaccount1", "audio-in")}),
        results=("http://127.0.0.1:10000/devstoreaccount1", "devstoreaccount1", "results"),
        dev_endpoints=POLICY.dev_endpoints,
    )
    parsed = parse_job(encode(job(input={"url": url})), policy=policy)
    assert parsed.input.url == url
    assert parsed.output.url == "http://127.0.0.1:10000/devstoreaccount1/results/call-1/"


MESSAGE_CASES: list[tuple[str, bytes, Reason]] = [
    ("empty body", b"", Reason.INVALID_MESSAGE),
    ("not json", b"hello", Reason.INVALID_MESSAGE),
    ("truncated json", b'{"version": 1, "job_id": ', Reason.INVALID_MESSAGE),
    ("json array", b"[1, 2]", Reason.INVALID_MESSAGE),
    ("json string", b'"job"', Reason.INVALID_MESSAGE),
    ("json null", b"null", Reason.INVALID_MESSAGE),
    ("not utf-8", b'{"job_id": "\xff\xfe"}', Reason.INVALID_MESSAGE),
    ("over 256 KiB", b'{"pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}', Reason.INVALID_MESSAGE),
    ("deeply nested", b"[" * 100_000 + b"]" * 100_000, Reason.INVALID_MESSAGE),
    ("NaN literal", b'{"version": NaN}', Reason.INVALID_JOB),
]


@pytest.mark.parametrize(
    ("body", "reason"), [c[1:] for c in MESSAGE_CASES], ids=[c[0] for c in MESSAGE_CASES]
)
def test_malformed_messages(body: bytes, reason: Reason) -> None:
    with pytest.raises(Permanent) as caught:
        parse_job(body, policy=POLICY)
    assert caught.value.reason == reason


JOB_CASES: list[tuple[str, dict[str, Any], Reason]] = [
    ("missing version", job(version=DROP), Reason.INVALID_JOB),
    ("version 2", job(version=2), Reason.INVALID_JOB),
    ("version as string", job(version="1"), Reason.INVALID_JOB),
    ("missing job_id", job(job_id=DROP), Reason.INVALID_JOB),
    ("missing input", job(input=DROP), Reason.INVALID_JOB),
    ("input is a string", job(input=GOOD_IN), Reason.INVALID_JOB),
    ("input url missing", job(input={}), Reason.INVALID_JOB),
    ("input url empty", job(input={"url": ""}), Reason.INVALID_JOB),
    ("input url number", job(input={"url": 42}), Reason.INVALID_JOB),
    ("unknown top-level key", job(priority="high"), Reason.INVALID_JOB),
    ("unknown session key", job(session={"temprature": 0.7}), Reason.INVALID_JOB),
    ("unknown streaming key", job(streaming={"speed": 2}), Reason.INVALID_JOB),
    ("unknown input key", job(input={"url": GOOD_IN, "sas": "x"}), Reason.INVALID_JOB),
    ("job_id traversal", job(job_id="../x"), Reason.INVALID_JOB),
    ("job_id slash", job(job_id="a/b"), Reason.INVALID_JOB),
    ("job_id backslash", job(job_id="a\\b"), Reason.INVALID_JOB),
    ("job_id leading dot", job(job_id=".hidden"), Reason.INVALID_JOB),
    ("job_id leading dash", job(job_id="-x"), Reason.INVALID_JOB),
    ("job_id empty", job(job_id=""), Reason.INVALID_JOB),
    ("job_id 129 chars", job(job_id="a" * 129), Reason.INVALID_JOB),
    ("job_id cyrillic a", job(job_id="c\u0430ll-1"), Reason.INVALID_JOB),
    ("job_id fullwidth", job(job_id="\uff43all"), Reason.INVALID_JOB),
    ("job_id space", job(job_id="call 1"), Reason.INVALID_JOB),
    ("job_id newline", job(job_id="call\n1"), Reason.INVALID_JOB),
    ("job_id number", job(job_id=123), Reason.INVALID_JOB),
    ("instructions over 64 KiB", job(session={"instructions": "x" * (64 * 1024 + 1)}), Reason.INVALID_JOB),
    ("65 tools", job(tools=[f"t{i}" for i in range(65)]), Reason.INVALID_JOB),
    ("duplicate tools", job(tools=["a", "a"]), Reason.INVALID_JOB),
    ("tool name with space", job(tools=["get weather"]), Reason.INVALID_JOB),
    ("33 metadata pairs", job(metadata={f"k{i}": "v" for i in range(33)}), Reason.INVALID_JOB),
    ("metadata non-string value", job(metadata={"n": 1}), Reason.INVALID_JOB),
    ("metadata nested", job(metadata={"n": {"a": "b"}}), Reason.INVALID_JOB),
    ("negative pace", job(streaming={"pace": -1}), Reason.INVALID_JOB),
    ("absurd pace", job(streaming={"pace": 1e9}), Reason.INVALID_JOB),
    ("pace as string", job(streaming={"pace": "fast"}), Reason.INVALID_JOB),
    ("odd frame_ms", job(streaming={"frame_ms": 17}), Reason.INVALID_JOB),
    ("unsupported sample rate", job(streaming={"sample_rate": 44100}), Reason.INVALID_JOB),
    ("g711 at 24 kHz", job(streaming={"audio_format": "g711_ulaw"}), Reason.INVALID_JOB),
    ("channel 9", job(streaming={"channel": 9}), Reason.INVALID_JOB),
    ("channel name", job(streaming={"channel": "left"}), Reason.INVALID_JOB),
    ("bool as pace", job(streaming={"pace": True}), Reason.INVALID_JOB),
    ("bad modality", job(session={"modalities": ["video"]}), Reason.INVALID_JOB),
    ("bad vad type", job(session={"turn_detection": {"type": "semantic_vad"}}), Reason.INVALID_JOB),
    ("vad threshold 2", job(session={"turn_detection": {"threshold": 2}}), Reason.INVALID_JOB),
    ("conversation bad role", job(conversation=[{"role": "tool", "text": "x"}]), Reason.INVALID_JOB),
    ("conversation empty text", job(conversation=[{"role": "user", "text": ""}]), Reason.INVALID_JOB),
    ("fixture unknown key", job(tool_fixtures=[{"tool": "a", "output": 1}]), Reason.INVALID_JOB),
    ("outputs unknown key", job(outputs={"video": True}), Reason.INVALID_JOB),
]


URL_CASES: list[tuple[str, str]] = [
    ("http scheme", "http://acct.blob.core.windows.net/audio-in/a.wav"),
    ("ftp scheme", "ftp://acct.blob.core.windows.net/audio-in/a.wav"),
    ("file scheme", "file:///etc/passwd"),
    ("no scheme", "acct.blob.core.windows.net/audio-in/a.wav"),
    ("userinfo", "https://user:pw@acct.blob.core.windows.net/audio-in/a.wav"),
    ("userinfo without password", "https://evil.com@acct.blob.core.windows.net/audio-in/a.wav"),
    ("explicit port", "https://acct.blob.core.windows.net:8443/audio-in/a.wav"),
    ("bad port", "https://acct.blob.core.windows.net:99999/audio-in/a.wav"),
    ("ipv4 literal", "https://10.0.0.5/audio-in/a.wav"),
    ("ipv6 literal", "https://[::1]/audio-in/a.wav"),
    ("integer ip", "https://2130706433/audio-in/a.wav"),
    ("metadata endpoint", "http://169.254.169.254/metadata/identity"),
    ("look-alike suffix", "https://acct.blob.core.windows.net.evil.com/audio-in/a.wav"),
    ("look-alike prefix", "https://acct-blob.core.windows.net/audio-in/a.wav"),
    ("nested subdomain", "https://x.acct.blob.core.windows.net/audio-in/a.wav"),
    ("trailing dot host", "https://acct.blob.core.windows.net./audio-in/a.wav"),
    ("foreign host", "https://example.com/audio-in/a.wav"),
    ("file share endpoint", "https://acct.file.core.windows.net/audio-in/a.wav"),
    ("unicode host", "https://acct.blob.core.windоws.net/audio-in/a.wav"),
    ("punycode host", "https://xn--acct-9na.blob.core.windows.net/audio-in/a.wav"),
    ("dot-dot segment", "https://acct.blob.core.windows.net/audio-in/../secrets/a.wav"),
    ("encoded dot-dot", "https://acct.blob.core.windows.net/audio-in/%2e%2e/secrets/a.wav"),
    ("encoded slash", "https://acct.blob.core.windows.net/audio-in/..%2fsecrets%2fa.wav"),
    ("double encoded", "https://acct.blob.core.windows.net/audio-in/%252e%252e/a.wav"),
    ("backslash", "https://acct.blob.core.windows.net/audio-in/..\\a.wav"),
    ("empty blob name", "https://acct.blob.core.windows.net/audio-in/"),
    ("container only", "https://acct.blob.core.windows.net/audio-in"),
    ("empty segment", "https://acct.blob.core.windows.net/audio-in//a.wav"),
    ("control char", "https://acct.blob.core.windows.net/audio-in/a%00.wav"),
    ("sas query", "https://acct.blob.core.windows.net/audio-in/a.wav?sv=2024&sig=abc"),
    ("fragment", "https://acct.blob.core.windows.net/audio-in/a.wav#x"),
    ("container not allowed", "https://acct.blob.core.windows.net/private/a.wav"),
    ("account not allowed", "https://stranger.blob.core.windows.net/audio-in/a.wav"),
    ("uppercase container trick", "https://acct.blob.core.windows.net/Audio-In/a.wav"),
    ("space in url", "https://acct.blob.core.windows.net/audio-in/a b.wav"),
    ("dev endpoint not configured", "http://127.0.0.1:9999/devstoreaccount1/audio-in/a.wav"),
    ("dev account mismatch", "http://127.0.0.1:10000/otheraccount/audio-in/a.wav"),
]


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in JOB_CASES], ids=[c[0] for c in JOB_CASES])
def test_contract_violations(body: dict[str, Any], reason: Reason) -> None:
    with pytest.raises(Permanent) as caught:
        parse_job(encode(body), policy=POLICY)
    assert caught.value.reason == reason, caught.value.detail


@pytest.mark.parametrize("url", [c[1] for c in URL_CASES], ids=[c[0] for c in URL_CASES])
def test_hostile_input_urls_are_forbidden(url: str) -> None:
    with pytest.raises(Permanent) as caught:
        parse_job(encode(job(input={"url": url})), policy=POLICY)
    assert caught.value.reason == Reason.INPUT_FORBIDDEN, caught.value.detail


@pytest.mark.parametrize(
    "url",
    [
        f"{ACCT}/audio-in/a.wav",  # input container, not an output one
        "https://acct.blob.core.windows.net.evil.com/results/x/",
        "https://acct.blob.core.windows.net/results/../audio-in/",
    ],
)
def test_output_urls_are_checked_too(url: str) -> None:
    with pytest.raises(Permanent) as caught:
        parse_job(encode(job(output={"url": url})), policy=POLICY)
    assert caught.value.reason == Reason.INPUT_FORBIDDEN


def test_wildcard_container_and_explicit_output_container() -> None:
    parsed = parse_job(
        encode(
            job(
                input={"url": "https://other.blob.core.windows.net/anything/a.wav"},
                output={"url": f"{ACCT}/exports/run-7"},
            )
        ),
        policy=POLICY,
    )
    assert parsed.input.container == "anything"
    assert parsed.output.name == "run-7/"


def test_error_detail_does_not_echo_huge_values() -> None:
    with pytest.raises(Permanent) as caught:
        parse_job(encode(job(session={"instructions": "x" * 70_000})), policy=POLICY)
    assert len(caught.value.detail) < 500


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_only_raise_classified_errors(body: bytes) -> None:
    with contextlib.suppress(Permanent):
        parse_job(body, policy=POLICY)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_only_raises_classified_errors(value: Any) -> None:
    with contextlib.suppress(Permanent):
        parse_job(json.dumps(value).encode(), policy=POLICY)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            ["version", "job_id", "input", "output", "session", "streaming", "tools", "metadata"]
        ),
        json_values,
    )
)
def test_job_shaped_json_only_raises_classified_errors(fields: dict[str, Any]) -> None:
    body = {"version": 1, "job_id": "j", "input": {"url": GOOD_IN}} | fields
    with contextlib.suppress(Permanent):
        parse_job(json.dumps(body).encode(), policy=POLICY)


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_urls_only_raise_input_forbidden(url: str) -> None:
    try:
        parsed = parse_job(encode(job(input={"url": url})), policy=POLICY)
    except Permanent as exc:
        assert exc.reason in {Reason.INPUT_FORBIDDEN, Reason.INVALID_JOB}
    else:  # whatever passed really is inside an allow-listed container
        assert (parsed.input.account, parsed.input.container) in {("acct", "audio-in")} or (
            parsed.input.account == "other"
        )
