"""Settings: every one documented, each misconfiguration explained in one sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
DEVSTACK_CONN = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)
SETTING_NAMES = sorted(name.upper() for name in Settings.model_fields)


def test_every_setting_is_in_env_example() -> None:
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    assert set(SETTING_NAMES) - documented == set()
    assert documented - set(SETTING_NAMES) == set(), "documented settings the code does not read"


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    in_table = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", readme, re.M))
    assert set(SETTING_NAMES) - in_table == set()


def test_env_example_loads_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=REPO / ".env.example")  # type: ignore[call-arg]
    assert settings.servicebus_queue == "audio-jobs"
    assert settings.servicebus_connection_string is None


def test_defaults() -> None:
    settings = load_settings()
    assert (settings.max_concurrent_jobs, settings.max_attempts, settings.voicelive_model) == (
        4,
        5,
        "gpt-realtime",
    )


@pytest.mark.parametrize(
    ("env", "call", "message"),
    [
        ({}, "queue_config", "set SERVICEBUS_CONNECTION_STRING or SERVICEBUS_NAMESPACE"),
        (
            {
                "SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://x/",
                "SERVICEBUS_NAMESPACE": "ns.servicebus.windows.net",
            },
            "queue_config",
            "set only one of",
        ),
        ({}, "storage_config", "set STORAGE_CONNECTION_STRING or STORAGE_ACCOUNT_URL"),
        ({}, "voicelive_config", "VOICELIVE_ENDPOINT is not set"),
    ],
)
def test_missing_or_conflicting_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], call: str, message: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        getattr(load_settings(), call)()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MAX_CONCURRENT_JOBS", "0", "MAX_CONCURRENT_JOBS"),
        ("MAX_CONCURRENT_JOBS", "lots", "MAX_CONCURRENT_JOBS"),
        ("SERVICEBUS_NAMESPACE", "sb://ns.servicebus.windows.net/", "fully qualified"),
        ("ALLOWED_INPUT_CONTAINERS", "justaname", "account/container"),
        ("ALLOWED_INPUT_CONTAINERS", "*/*", "account/container"),
        ("VOICELIVE_ENDPOINT", "ftp://x", "http"),
        ("HEALTH_PORT", "70000", "HEALTH_PORT"),
        ("TRACE_CONTENT", "maybe", "TRACE_CONTENT"),
    ],
)
def test_invalid_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, key: str, value: str, message: str
) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_secrets_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICELIVE_API_KEY", "super-secret-key")
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", DEVSTACK_CONN)
    settings = load_settings()
    assert "super-secret-key" not in repr(settings)
    assert "a2V5" not in repr(settings.storage_config())


def test_dev_connection_string_makes_loopback_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", DEVSTACK_CONN)
    monkeypatch.setenv("ALLOWED_INPUT_CONTAINERS", "devstoreaccount1/audio-in")
    policy = load_settings().blob_policy()
    ref = policy.check_input("http://127.0.0.1:10000/devstoreaccount1/audio-in/x.wav")
    assert ref.account == "devstoreaccount1"
    assert policy.default_output("j1").url == "http://127.0.0.1:10000/devstoreaccount1/results/j1/"


def test_production_account_url_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_ACCOUNT_URL", "https://prodacct.blob.core.windows.net")
    monkeypatch.setenv("ALLOWED_INPUT_CONTAINERS", "prodacct/calls")
    policy = load_settings().blob_policy()
    assert policy.check_input("https://prodacct.blob.core.windows.net/calls/a.wav").container == "calls"
    assert policy.default_output("j").url == "https://prodacct.blob.core.windows.net/results/j/"
    with pytest.raises(Exception, match="must use https"):
        policy.check_input("http://127.0.0.1:10000/devstoreaccount1/calls/a.wav")
