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

# Input transcription
from .recognizer import RECOGNIZERS, PocketsphinxRecognizer, Recognizer

# Observability
from .records import ConnectionRecord
from .server import VoiceLiveSimulator

__all__ = [
    "RECOGNIZERS",
    "CloseAfter",
    "CloseKind",
    "ConnectRateLimiter",
    "ConnectionRecord",
    "ErrorEvent",
    "Fault",
    "FaultControl",
    "HoldResponse",
    "Mode",
    "PocketsphinxRecognizer",
    "Recognizer",
    "Refuse",
    "ResponseTiming",
    "ToolRule",
    "ToolRuleMode",
    "VoiceLiveSimulator",
    "add_arguments",
    "from_args",
]
