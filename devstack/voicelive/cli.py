"""Command-line options of the simulator for `python -m devstack voicelive` and `python -m devstack up`."""

from __future__ import annotations

import argparse
import math

from .options import Mode, ResponseTiming, ToolRule, ToolRuleMode
from .recognizer import RECOGNIZERS
from .server import VoiceLiveSimulator

__all__ = ["add_arguments", "from_args"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options (all prefixed so they can share a parser with other stand-ins)."""
    group = parser.add_argument_group("voicelive simulator")
    group.add_argument("--voicelive-host", default="127.0.0.1")
    group.add_argument(
        "--port",
        "--voicelive-port",
        dest="voicelive_port",
        type=int,
        default=0,
        help="port (0 = any free port)",
    )
    group.add_argument(
        "--voicelive-api-key",
        action="append",
        dest="voicelive_api_keys",
        help="accepted api-key (repeatable; default devstack-key)",
    )
    group.add_argument("--voicelive-mode", choices=[m.value for m in Mode], default=Mode.NORMAL.value)
    group.add_argument(
        "--voicelive-connects-per-minute",
        type=int,
        default=30,
        help="new connections per key and minute (0 = unlimited)",
    )
    group.add_argument(
        "--voicelive-tool-rule",
        choices=[m.value for m in ToolRuleMode],
        default=ToolRuleMode.FIRST_TURN.value,
    )
    group.add_argument(
        "--voicelive-pace",
        type=float,
        default=2.0,
        help="reply audio generation speed vs real time (0 = no delays)",
    )
    group.add_argument("--voicelive-reply-audio-ms", type=int, default=1200)
    group.add_argument(
        "--voicelive-recognizer",
        choices=RECOGNIZERS,
        default="placeholder",
        help="input transcription: placeholder text, or real speech recognition with pocketsphinx",
    )


def from_args(args: argparse.Namespace) -> VoiceLiveSimulator:
    """Build an (unstarted) simulator from parsed `add_arguments` options."""
    pace = args.voicelive_pace
    return VoiceLiveSimulator(
        host=args.voicelive_host,
        port=args.voicelive_port,
        api_keys=tuple(args.voicelive_api_keys or ("devstack-key",)),
        mode=Mode(args.voicelive_mode),
        connects_per_minute=args.voicelive_connects_per_minute or None,
        recognizer=args.voicelive_recognizer,
        tool_rule=ToolRule(mode=ToolRuleMode(args.voicelive_tool_rule)),
        timing=ResponseTiming(
            pace=math.inf if pace <= 0 else pace, reply_audio_ms=args.voicelive_reply_audio_ms
        ),
    )
