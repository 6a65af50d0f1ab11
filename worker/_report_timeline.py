"""The timeline SVG of report.html (lanes on the input clock) and the formatting helpers it shares."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from worker.voice.timeline import AssistantResponse, Timeline, ToolCallRecord, UserTurn
from worker.waveform import Waveform

# Timeline geometry, in SVG user units (the SVG scales to the page width).
_W, _X0, _X1 = 1200, 96, 1172
_PW = _X1 - _X0
_CALLER = (30, 112)  # lane top, height
_ASSISTANT = (154, 46)
_TOOLS = (212, 32)
_H = 252
_TICK_STEPS_MS = (100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
                  600_000, 900_000, 1_800_000, 3_600_000)  # fmt: skip


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def clock(ms: float | None) -> str:
    """m:ss.s (or h:mm:ss.s) on the input clock."""
    if ms is None:
        return "–"
    tenths = max(0, round(ms / 100))
    h, rest = divmod(tenths, 36_000)
    m, rest = divmod(rest, 600)
    s, t = divmod(rest, 10)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m}:{s:02d}.{t}"


def dur(ms: float | None) -> str:
    if ms is None:
        return "–"
    return f"{ms:.0f} ms" if abs(ms) < 1000 else f"{ms / 1000:.2f} s"


def slug(status: str) -> str:
    return status if status in {"completed", "cancelled", "failed", "incomplete", "in_progress"} else "other"


def turn_for(resp: AssistantResponse, turns: list[UserTurn]) -> UserTurn | None:
    for turn in turns:
        if (resp.user_item_id and turn.item_id == resp.user_item_id) or resp.response_id in turn.response_ids:
            return turn
    return None


def latency_ms(resp: AssistantResponse, turn: UserTurn | None) -> float | None:
    """End of the caller's turn → first response audio: measured by the worker when it was, else the
    difference on the input clock."""
    if resp.first_audio_latency_ms is not None:
        return resp.first_audio_latency_ms
    if turn is not None and turn.end_ms is not None and resp.start_ms is not None and resp.audio_ms > 0:
        return resp.start_ms - turn.end_ms
    return None


def span(resp: AssistantResponse) -> tuple[float, float] | None:
    start = resp.start_ms if resp.start_ms is not None else resp.done_ms
    if start is None:
        return None
    return start, start + resp.audio_ms


def extent_ms(transcript: Mapping[str, Any], timeline: Timeline, waveform: Waveform | None) -> float:
    ends = [waveform.duration_ms if waveform else 0.0, 1000.0]
    info = transcript.get("input")
    if isinstance(info, Mapping) and isinstance(info.get("duration_s"), int | float):
        ends.append(float(info["duration_s"]) * 1000)
    ends += [t.end_ms or t.start_ms or 0.0 for t in timeline.user_turns]
    ends += [placed[1] for r in timeline.responses if (placed := span(r))]
    ends += [(c.start_ms or 0.0) + c.duration_ms for c in timeline.tool_calls]
    return max(ends)


def timeline_svg(timeline: Timeline, waveform: Waveform | None, extent: float) -> str:
    """The `#timeline` SVG: lanes, turns (`.turn`), waveform, responses (`.response`), tools (`.tool`)."""
    parts = [
        _axis(extent),
        _lane("Caller", _CALLER),
        _lane("Assistant", _ASSISTANT),
        _lane("Tools", _TOOLS),
        *(_turn_band(t, extent) for t in timeline.user_turns),
        _wave_path(waveform, extent),
        *_latency_links(timeline, extent),
        *(_response_bar(r, extent) for r in timeline.responses),
        *(_tool_marker(c, extent) for c in timeline.tool_calls),
        f'<line id="playhead" x1="0" x2="0" y1="24" y2="{_H}"/>',
    ]
    svg = (
        f'<svg id="timeline" viewBox="0 0 {_W} {_H}" role="img" aria-label="job timeline" '
        f'data-x0="{_X0}" data-pw="{_PW}" data-ms="{extent:.0f}" data-w="{_W}">' + "".join(parts) + "</svg>"
    )
    return svg


def _x(ms: float, extent: float) -> float:
    return round(_X0 + _PW * min(max(ms, 0.0), extent) / extent, 1)


def _axis(extent: float) -> str:
    step = next((s for s in _TICK_STEPS_MS if extent / s <= 12), _TICK_STEPS_MS[-1])
    out = []
    for n in range(int(extent // step) + 1):
        x = _x(n * step, extent)
        out.append(
            f'<line class="grid" x1="{x}" x2="{x}" y1="24" y2="{_H}"/>'
            f'<text class="tick" x="{x}" y="16">{_tick_label(n * step, step)}</text>'
        )
    return "".join(out)


def _tick_label(ms: float, step: int) -> str:
    label = clock(ms)
    return label[:-2] if step % 1000 == 0 else label


def _lane(label: str, lane: tuple[int, int]) -> str:
    top, height = lane
    return (
        f'<rect class="lane" x="{_X0}" y="{top}" width="{_PW}" height="{height}" rx="6"/>'
        f'<text class="lane-label" x="{_X0 - 12}" y="{top + height / 2 + 5}">{esc(label)}</text>'
    )


def _turn_band(turn: UserTurn, extent: float) -> str:
    if turn.start_ms is None:
        return ""
    end = turn.end_ms if turn.end_ms is not None else extent
    x0, x1 = _x(turn.start_ms, extent), _x(end, extent)
    top, height = _CALLER
    kind = "turn no-response" if turn.no_response else "turn"
    tip = f"caller turn {turn.index}: {clock(turn.start_ms)} → {clock(turn.end_ms)}"
    if turn.transcript:
        tip += f"\n{turn.transcript}"
    return (
        f'<g class="{kind}" id="turn-{turn.index}"><title>{esc(tip)}</title>'
        f'<rect x="{x0}" y="{top}" width="{max(x1 - x0, 1.5):.1f}" height="{height}" rx="4"/>'
        f'<text x="{x0 + 4}" y="{top + 13}">U{turn.index}</text></g>'
    )


def _wave_path(waveform: Waveform | None, extent: float) -> str:
    top, height = _CALLER
    mid, half = top + height / 2, height / 2 - 6
    if waveform is None or not waveform.mins:
        return f'<text class="muted-svg" x="{_X0 + 12}" y="{mid + 4}">input waveform not available</text>'
    peak = max(0.05, *waveform.maxs, -min(waveform.mins))
    step = waveform.bucket_ms
    upper = [f"{_x(i * step, extent)},{mid - v / peak * half:.1f}" for i, v in enumerate(waveform.maxs)]
    lower = [f"{_x(i * step, extent)},{mid - v / peak * half:.1f}" for i, v in enumerate(waveform.mins)]
    points = " ".join(upper + lower[::-1])
    return f'<polygon class="wave" points="{points}"><title>input (peak-normalised)</title></polygon>'


def _latency_links(timeline: Timeline, extent: float) -> list[str]:
    out = []
    for resp in timeline.responses:
        turn = turn_for(resp, timeline.user_turns)
        if turn is None or turn.end_ms is None or resp.start_ms is None or resp.audio_ms <= 0:
            continue
        x0, x1 = _x(turn.end_ms, extent), _x(resp.start_ms, extent)
        y0, y1 = sum(_CALLER), _ASSISTANT[0]
        tip = f"U{turn.index} end → R{resp.index} first audio: {dur(latency_ms(resp, turn))}"
        curve = f"M{x0},{y0} C{x0},{y1} {x1},{y0} {x1},{y1}"
        out.append(f'<path class="latency" d="{curve}"><title>{esc(tip)}</title></path>')
    return out


def _response_bar(resp: AssistantResponse, extent: float) -> str:
    placed = span(resp)
    if placed is None:
        return ""
    x0, x1 = _x(placed[0], extent), _x(placed[1], extent)
    top, height = _ASSISTANT
    kind = f"response status-{slug(resp.status)}" + (" truncated" if resp.truncated else "")
    kind += "" if resp.audio_ms > 0 else " no-audio"
    spoken = resp.transcript or resp.text
    tip = (
        f"response {resp.index} ({resp.status}{', ' + resp.status_reason if resp.status_reason else ''}; "
        f"trigger {resp.trigger}): {clock(placed[0])} → {clock(placed[1])}, audio {dur(resp.audio_ms)}"
        + (f"\n{spoken}" if spoken else "")
    )
    label = f'<text x="{x0 + 5}" y="{top + height / 2 + 4}">R{resp.index}</text>' if x1 - x0 > 26 else ""
    return (
        f'<g class="{kind}" id="response-{resp.index}"><title>{esc(tip)}</title>'
        f'<rect x="{x0}" y="{top + 6}" width="{max(x1 - x0, 3):.1f}" height="{height - 12}" rx="4"/>'
        f"{label}</g>"
    )


def _tool_marker(call: ToolCallRecord, extent: float) -> str:
    if call.start_ms is None:
        return ""
    x = _x(call.start_ms, extent)
    y = _TOOLS[0] + _TOOLS[1] / 2
    kind = "tool error" if call.error else "tool"
    tip = f"{call.name}({call.arguments}) at {clock(call.start_ms)}, {dur(call.duration_ms)}"
    return (
        f'<g class="{kind}"><title>{esc(tip)}</title>'
        f'<path d="M{x},{y - 8} L{x + 8},{y} L{x},{y + 8} L{x - 8},{y} Z"/>'
        f'<text x="{x + 12}" y="{y + 4}">{esc(call.name)}</text></g>'
    )
