"""The fixed stylesheet and script inlined into every report.html (hashed into its CSP by worker.report)."""

from __future__ import annotations

CSS = """
:root{--bg:#f3f4f7;--card:#fff;--ink:#1c2333;--muted:#6b7385;--line:#e3e6ec;--turn:#dce8ff;--turn-edge:#8fb0f0;
--ok:#12a07c;--warn:#e59a2f;--bad:#d64545;--other:#8a93a6;--tool:#7047eb;--wave:#34415c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:24px 20px 40px}
header{margin-bottom:16px}
.title{display:flex;align-items:center;gap:12px;flex-wrap:wrap}
h1{font-size:24px;margin:0;letter-spacing:-.01em;word-break:break-all}
h2{font-size:16px;margin:0 0 6px}
.sub{margin:2px 0 14px;color:var(--muted);overflow-wrap:anywhere}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:10px}
.fact{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 14px;min-width:0}
.fact .k{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted)}
.fact .v{font-size:16px;font-weight:600;margin:2px 0;overflow-wrap:anywhere}
.fact .s{font-size:12px;color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px 18px;margin:14px 0;
box-shadow:0 1px 2px rgba(20,30,50,.04)}
.muted{color:var(--muted)}
p.muted{margin:0 0 10px;font-size:13px}
#timeline{width:100%;height:auto;display:block;cursor:pointer;user-select:none}
#timeline text{font-size:12px;fill:var(--muted)}
#timeline .tick{text-anchor:middle;font-variant-numeric:tabular-nums}
#timeline .lane{fill:#f7f8fb;stroke:var(--line)}
#timeline .lane-label{text-anchor:end;font-weight:600;fill:var(--ink)}
#timeline .grid{stroke:var(--line);stroke-width:1}
.turn rect{fill:var(--turn);stroke:var(--turn-edge)}
.turn.no-response rect{fill:#fff1dc;stroke:var(--warn);stroke-dasharray:4 3}
#timeline .turn text{fill:#3e63b8;font-weight:600;font-size:11px}
.wave{fill:var(--wave);opacity:.85}
.response rect{fill:var(--other)}
.response.status-completed rect{fill:var(--ok)}
.response.status-cancelled rect{fill:var(--warn)}
.response.status-failed rect,.response.status-incomplete rect{fill:var(--bad)}
.response.truncated rect{stroke:#7a4b00;stroke-dasharray:3 2}
.response.no-audio rect{opacity:.55}
#timeline .response text{fill:#fff;font-weight:600;font-size:11px}
.tool path{fill:var(--tool)}
.tool.error path{fill:var(--bad)}
#timeline .tool text{fill:var(--tool);font-weight:600}
.latency{fill:none;stroke:#94a3b8;stroke-width:1.5;stroke-dasharray:4 3}
#playhead{stroke:#e11d48;stroke-width:2;display:none}
#playhead.on{display:inline}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;margin:10px 0 4px;font-size:12px;color:var(--muted)}
.key i{display:inline-block;width:14px;height:10px;border-radius:3px;margin-right:6px;vertical-align:-1px}
.k-turn i{background:var(--turn);border:1px solid var(--turn-edge)}
.k-completed i{background:var(--ok)}.k-cancelled i{background:var(--warn)}.k-failed i{background:var(--bad)}
.k-tool i{background:var(--tool);width:10px;height:10px;transform:rotate(45deg)}
.k-latency i{border-top:2px dashed #94a3b8;height:0;border-radius:0}
.player{display:flex;align-items:center;gap:14px;flex-wrap:wrap;margin-top:10px;padding-top:12px;
border-top:1px solid var(--line)}
.player audio{flex:1;min-width:280px}
table{width:100%;border-collapse:collapse;font-size:13px}
th{text-align:left;font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);
font-weight:600;padding:6px 8px;border-bottom:1px solid var(--line)}
td{padding:8px;border-bottom:1px solid var(--line);vertical-align:top;font-variant-numeric:tabular-nums}
tr[data-ms]{cursor:pointer}
tr[data-ms]:hover td{background:#f7f9ff}
td.text{width:55%}
tr.assistant td.text{color:#1f4d40}
td.num{white-space:nowrap;text-align:right}
.who{display:inline-block;min-width:34px;text-align:center;border-radius:6px;padding:1px 6px;font-weight:700;
font-size:12px}
.who.caller{background:var(--turn);color:#2d4f9e}
.who.assistant{background:#d8f3ea;color:#0c6b53}
.chip{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600;
background:#eceef3;color:#4a5163;white-space:nowrap}
.chip.ok,.chip.completed{background:#d8f3ea;color:#0c6b53}
.chip.bad,.chip.failed,.chip.incomplete{background:#fbe1e1;color:#9b2c2c}
.chip.warn,.chip.cancelled{background:#fdefd9;color:#8a5200}
.chip.info{background:#ece6ff;color:#4b2bb3}
pre{margin:0;white-space:pre-wrap;word-break:break-word;font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,
Consolas,monospace;max-height:220px;overflow:auto}
td.err,li.err{color:var(--bad)}
.problems{margin:0;padding-left:18px}
.clips{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:10px}
.clip{border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.clip audio{width:100%;margin-top:6px}
footer{color:var(--muted);font-size:12px;margin-top:18px;text-align:center}
"""

# Moves the playhead with conversation.wav, and seeks it from clicks on the timeline or a transcript row.
SCRIPT = """
(() => {
  const audio = document.getElementById("conversation");
  const svg = document.getElementById("timeline");
  const head = document.getElementById("playhead");
  if (!audio || !svg || !head) return;
  const x0 = +svg.dataset.x0, pw = +svg.dataset.pw, total = +svg.dataset.ms, w = +svg.dataset.w;
  const draw = () => {
    const x = x0 + pw * Math.min(1, (audio.currentTime * 1000) / total);
    head.setAttribute("transform", "translate(" + x + ",0)");
    head.classList.toggle("on", audio.currentTime > 0);
    if (!audio.paused) requestAnimationFrame(draw);
  };
  const seek = (ms) => { audio.currentTime = Math.max(0, ms / 1000); audio.play().catch(() => {}); };
  ["play", "seeked", "timeupdate"].forEach((e) => audio.addEventListener(e, draw));
  svg.addEventListener("click", (e) => {
    const box = svg.getBoundingClientRect();
    const x = ((e.clientX - box.left) * w) / box.width;
    if (x >= x0) seek(((x - x0) / pw) * total);
  });
  document.querySelectorAll("tr[data-ms]").forEach((row) =>
    row.addEventListener("click", () => seek(+row.dataset.ms)));
})();
"""
