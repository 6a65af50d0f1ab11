"""Voice Live simulator: an aiohttp WebSocket server the real `azure-ai-voicelive` SDK cannot tell apart."""

from __future__ import annotations

# Primary types
from .cli import add_arguments, from_args

# Faults
from .faults import (
    CloseAfter,
    CloseKind,
    ConnectRateLimiter,
    ErrorEvent,
    Fault,
    FaultControl,
    HoldResponse,
    Refuse,
)
from .options import Mode, ResponseTiming, ToolRule, ToolRuleMode

# Observability
from .records import ConnectionRecord
from .server import VoiceLiveSimulator

__all__ = [
    "CloseAfter",
    "CloseKind",
    "ConnectRateLimiter",
    "ConnectionRecord",
    "ErrorEvent",
    "Fault",
    "FaultControl",
    "HoldResponse",
    "Mode",
    "Refuse",
    "ResponseTiming",
    "ToolRule",
    "ToolRuleMode",
    "VoiceLiveSimulator",
    "add_arguments",
    "from_args",
]
