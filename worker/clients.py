"""Build the SDK clients a command needs from settings, and own them: one `async with` closes them all."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.servicebus.aio import ServiceBusClient
from azure.storage.blob.aio import BlobServiceClient

from worker.config import Settings
from worker.queue import bus_client
from worker.storage import blob_service_client
from worker.voice.connection import SdkVoiceConnector

__all__ = ["Clients", "open_clients"]


@dataclass(frozen=True, slots=True)
class Clients:
    """What was asked for; `None` where the command did not need it."""

    blob: BlobServiceClient | None
    voice: SdkVoiceConnector | None
    bus: ServiceBusClient | None
    credential: AsyncTokenCredential | None


@contextlib.asynccontextmanager
async def open_clients(
    settings: Settings, *, storage: bool, voice: bool, bus: bool = False
) -> AsyncIterator[Clients]:
    """Open the clients a command needs. Entra ID (DefaultAzureCredential, honouring AZURE_CLIENT_ID and
    AZURE_TOKEN_CREDENTIALS) is created only when some service has no key or connection string."""
    storage_cfg = settings.storage_config() if storage else None
    voice_cfg = settings.voicelive_config() if voice else None
    bus_cfg = settings.queue_config() if bus else None
    needs_identity = (
        (storage_cfg is not None and storage_cfg.connection_string is None)
        or (voice_cfg is not None and voice_cfg.api_key is None)
        or (bus_cfg is not None and bus_cfg.connection_string is None)
    )
    async with contextlib.AsyncExitStack() as stack:
        credential: AsyncTokenCredential | None = None
        if needs_identity:
            credential = await stack.enter_async_context(_default_credential(settings))
        blob = None
        if storage_cfg is not None:
            conn = storage_cfg.connection_string.get_secret_value() if storage_cfg.connection_string else None
            blob = await stack.enter_async_context(
                blob_service_client(account_url=storage_cfg.account_url, credential=credential,
                                    connection_string=conn)
            )  # fmt: skip
        connector = None
        if voice_cfg is not None:
            voice_credential: Any = (
                AzureKeyCredential(voice_cfg.api_key.get_secret_value()) if voice_cfg.api_key else credential
            )
            connector = SdkVoiceConnector(
                endpoint=voice_cfg.endpoint,
                credential=voice_credential,
                api_version=voice_cfg.api_version,
                connect_timeout_s=voice_cfg.connect_timeout_s,
            )
        sb = None
        if bus_cfg is not None:
            conn_str = bus_cfg.connection_string.get_secret_value() if bus_cfg.connection_string else None
            sb = await stack.enter_async_context(
                bus_client(connection_string=conn_str, namespace=bus_cfg.namespace, credential=credential)
            )
        yield Clients(blob=blob, voice=connector, bus=sb, credential=credential)


def _default_credential(settings: Settings) -> Any:
    from azure.identity.aio import DefaultAzureCredential

    kwargs: dict[str, Any] = {}
    if settings.azure_client_id:
        kwargs["managed_identity_client_id"] = settings.azure_client_id
    return DefaultAzureCredential(**kwargs)
