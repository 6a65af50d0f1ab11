"""Every setting the worker reads, in one place (the only module that touches the environment).

`Settings` loads and type-checks the environment (and an optional `.env`). Commands then ask for the
slice they need — `queue_config()`, `storage_config()`, `voicelive_config()`, `blob_policy()` — which
raise `ConfigError` with one clear sentence per misconfiguration. Below this module, settings travel as
frozen dataclasses; secrets are `SecretStr`, so no `repr` or log line shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.blobs import BlobPolicy, DevEndpoint, parse_allow_list

__all__ = [
    "ConfigError",
    "QueueConfig",
    "Settings",
    "StorageConfig",
    "VoiceLiveConfig",
    "load_settings",
]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigError(Exception):
    """The environment cannot run the requested command; the message says what to set."""


class Settings(BaseSettings):
    """Environment variables (DESIGN.md §14). Names are the upper-case field names; see .env.example."""

    model_config = SettingsConfigDict(
        env_file=".env", env_ignore_empty=True, extra="ignore", case_sensitive=False, frozen=True
    )

    # Service Bus
    servicebus_connection_string: SecretStr | None = None
    servicebus_namespace: str | None = None
    servicebus_queue: str = "audio-jobs"
    results_queue: str | None = None
    # Blob Storage
    storage_connection_string: SecretStr | None = None
    storage_account_url: str | None = None
    results_container: str = "results"
    allowed_input_containers: str = ""
    allowed_output_containers: str = ""
    max_input_bytes: Annotated[int, Field(gt=0)] = 2 * 1024**3
    # Voice Live
    voicelive_endpoint: str | None = None
    voicelive_api_key: SecretStr | None = None
    voicelive_model: str = "gpt-realtime"
    voicelive_api_version: str | None = None
    voicelive_token_scope: str | None = None
    voicelive_connect_timeout_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    voicelive_connects_per_minute: Annotated[int, Field(ge=1, le=10_000)] = 30
    # Runtime
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=1000)] = 4
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 5
    shutdown_grace_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    health_port: Annotated[int, Field(ge=0, le=65535)] = 8080
    # Telemetry
    applicationinsights_connection_string: SecretStr | None = None
    otel_service_name: str = "voicelive-worker"
    otel_exporter_otlp_endpoint: str | None = None
    trace_content: bool = False
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Identity (read by azure-identity itself; listed so they are documented and visible)
    azure_client_id: str | None = None
    azure_token_credentials: str | None = None

    @field_validator("servicebus_namespace")
    @classmethod
    def _namespace_is_fqdn(cls, value: str | None) -> str | None:
        if value and ("://" in value or "/" in value or "." not in value):
            raise ValueError(
                "SERVICEBUS_NAMESPACE must be a fully qualified name like 'myns.servicebus.windows.net'"
            )
        return value

    @field_validator("allowed_input_containers", "allowed_output_containers")
    @classmethod
    def _allow_list_parses(cls, value: str) -> str:
        parse_allow_list(value)
        return value

    @field_validator("voicelive_endpoint", "storage_account_url")
    @classmethod
    def _is_url(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"https", "http", "wss", "ws"}:
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    # -- slices for each command ---------------------------------------------------------------------

    def queue_config(self) -> QueueConfig:
        _exactly_one(
            ("SERVICEBUS_CONNECTION_STRING", self.servicebus_connection_string),
            ("SERVICEBUS_NAMESPACE", self.servicebus_namespace),
            what="Service Bus",
        )
        return QueueConfig(
            connection_string=self.servicebus_connection_string,
            namespace=self.servicebus_namespace,
            queue=self.servicebus_queue,
            results_queue=self.results_queue,
        )

    def storage_config(self) -> StorageConfig:
        _exactly_one(
            ("STORAGE_CONNECTION_STRING", self.storage_connection_string),
            ("STORAGE_ACCOUNT_URL", self.storage_account_url),
            what="Blob Storage",
        )
        return StorageConfig(
            connection_string=self.storage_connection_string,
            account_url=self.storage_account_url or _blob_endpoint(self.storage_connection_string),
            results_container=self.results_container,
            max_input_bytes=self.max_input_bytes,
        )

    def voicelive_config(self) -> VoiceLiveConfig:
        if not self.voicelive_endpoint:
            raise ConfigError(
                "VOICELIVE_ENDPOINT is not set: give the Voice Live resource endpoint, "
                "e.g. https://<resource>.services.ai.azure.com"
            )
        return VoiceLiveConfig(
            endpoint=self.voicelive_endpoint,
            api_key=self.voicelive_api_key,
            model=self.voicelive_model,
            api_version=self.voicelive_api_version,
            token_scope=self.voicelive_token_scope,
            connect_timeout_s=self.voicelive_connect_timeout_s,
            connects_per_minute=self.voicelive_connects_per_minute,
        )

    def blob_policy(self) -> BlobPolicy:
        """The allow-list for job URLs. Loopback endpoints from a dev connection string are accepted."""
        storage = self.storage_config()
        account_url = storage.account_url.rstrip("/")
        dev: tuple[DevEndpoint, ...] = ()
        host = (urlsplit(account_url).hostname or "").lower()
        if host in LOOPBACK_HOSTS:
            endpoint = DevEndpoint.from_url(account_url)
            dev, account = (endpoint,), endpoint.account
        else:
            account = host.split(".", 1)[0]
        return BlobPolicy(
            allowed_inputs=parse_allow_list(self.allowed_input_containers),
            allowed_outputs=parse_allow_list(self.allowed_output_containers),
            results=(account_url, account, self.results_container),
            dev_endpoints=dev,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueConfig:
    connection_string: SecretStr | None
    namespace: str | None
    queue: str
    results_queue: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageConfig:
    connection_string: SecretStr | None
    account_url: str
    results_container: str
    max_input_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceLiveConfig:
    endpoint: str
    api_key: SecretStr | None
    model: str
    api_version: str | None
    token_scope: str | None
    connect_timeout_s: float
    connects_per_minute: int


def load_settings(**overrides: object) -> Settings:
    """Read the environment; a type or range error becomes one readable `ConfigError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False, include_input=False):
            name = str(err["loc"][0]).upper() if err["loc"] else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid settings: " + "; ".join(lines)) from None


def _exactly_one(*options: tuple[str, object], what: str) -> None:
    present = [name for name, value in options if value]
    names = " or ".join(name for name, _ in options)
    if not present:
        raise ConfigError(f"{what} is not configured: set {names}")
    if len(present) > 1:
        raise ConfigError(f"{what}: set only one of {names} (both are set)")


def _blob_endpoint(connection_string: SecretStr | None) -> str:
    """The blob endpoint a storage connection string points at (explicit BlobEndpoint or derived)."""
    if connection_string is None:
        return ""
    text = connection_string.get_secret_value()
    if text.strip().lower().startswith("usedevelopmentstorage=true"):
        return "http://127.0.0.1:10000/devstoreaccount1"
    parts = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
    lowered = {k.lower(): v for k, v in parts.items()}
    if endpoint := lowered.get("blobendpoint"):
        return endpoint.rstrip("/")
    account = lowered.get("accountname")
    if not account:
        raise ConfigError("STORAGE_CONNECTION_STRING has neither BlobEndpoint nor AccountName")
    protocol = lowered.get("defaultendpointsprotocol", "https")
    suffix = lowered.get("endpointsuffix", "core.windows.net")
    return f"{protocol}://{account}.blob.{suffix}"
