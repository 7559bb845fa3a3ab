"""The live view's one page: plain HTML and JavaScript, no external assets (the board may be offline).

It polls /api/state twice a second, updates the numbers, and reloads a source's image when the
encoder made a new one (refreshed JPEG: works through any proxy, no long-lived connection).
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge-agent live view</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;margin:0;background:#15181c;color:#e8e8e8}
 header{display:flex;gap:1.5em;align-items:baseline;padding:.6em 1em;background:#22272e;flex-wrap:wrap}
 header h1{font-size:1.1em;margin:0} .num{font-variant-numeric:tabular-nums;font-weight:600}
 .ok{color:#5bd35b} .bad{color:#ff6b6b} .warn{color:#ffc14d}
 main{display:flex;gap:1em;padding:1em;flex-wrap:wrap;align-items:flex-start}
 .source{background:#22272e;padding:.6em;border-radius:6px}
 .source img{display:block;max-width:640px;width:100%;background:#000;min-height:120px}
 .source .bar{display:flex;justify-content:space-between;align-items:center;margin-top:.4em;gap:1em}
 button{background:#2f81f7;color:#fff;border:0;border-radius:4px;padding:.35em .8em;cursor:pointer}
 table{border-collapse:collapse;font-size:.9em} td,th{padding:.15em .6em;text-align:left}
 tr.NG td.v{color:#ff6b6b;font-weight:600} tr.OK td.v{color:#5bd35b}
 #reasons{padding:0 1em;margin:0}
</style></head>
<body data-loads="0" data-polls="0">
<header><h1 id="device">edge-agent</h1>
 <span>health <span id="health" class="num">...</span></span>
 <span>fps <span id="fps" class="num">-</span></span>
 <span>latency p50 <span id="p50" class="num">-</span> ms, p99 <span id="p99" class="num">-</span> ms</span>
 <span>frames <span id="frames" class="num">0</span></span>
 <span>defects <span id="defects" class="num">0</span></span>
 <span>calibration images <span id="saved" class="num">0</span></span>
</header>
<ul id="reasons"></ul>
<main><div id="sources"></div>
<section><h2 style="font-size:1em;margin:.2em 0">Last verdicts</h2>
<table><thead><tr><th>time</th><th>source</th><th>frame</th><th>verdict</th><th>defects</th><th>ms</th></tr></thead>
<tbody id="verdicts"></tbody></table></section></main>
<script>
const token = new URLSearchParams(location.search).get("token") || "";
const q = (extra) => "?" + new URLSearchParams(Object.assign(token ? {token} : {}, extra || {})).toString();
const seen = {};
function el(tag, attrs, text) { const e = document.createElement(tag);
  Object.entries(attrs || {}).forEach(([k, v]) => e.setAttribute(k, v)); if (text !== undefined) e.textContent = text;
  return e; }
function card(name) {
  const box = el("div", {class: "source", id: "source-" + name});
  const img = el("img", {id: "img-" + name, alt: "latest frame of " + name});
  img.addEventListener("load", () => { document.body.dataset.loads = +document.body.dataset.loads + 1; });
  const bar = el("div", {class: "bar"});
  bar.append(el("span", {id: "label-" + name}, name));
  const button = el("button", {id: "save-" + name}, "Save as calibration image");
  button.addEventListener("click", async () => {
    const r = await fetch("/api/calibration/" + encodeURIComponent(name) + q(), {method: "POST"});
    const body = await r.json(); button.textContent = r.ok ? "Saved " + body.saved.split("/").pop() : body.error;
    setTimeout(() => { button.textContent = "Save as calibration image"; }, 3000); });
  bar.append(button); box.append(img, bar); document.getElementById("sources").append(box); return img;
}
function fmt(v, d) { return (v === null || v === undefined) ? "-" : Number(v).toFixed(d); }
async function poll() {
  try {
    const r = await fetch("/api/state" + q()); const s = await r.json();
    document.body.dataset.polls = +document.body.dataset.polls + 1;
    document.getElementById("device").textContent = "edge-agent " + (s.device || "");
    const h = document.getElementById("health"); h.textContent = s.health || "unknown";
    h.className = "num " + (s.healthy === false ? "bad" : (s.reasons && s.reasons.length ? "warn" : "ok"));
    document.getElementById("fps").textContent = fmt(s.fps, 1);
    document.getElementById("p50").textContent = fmt(s.latency_ms_p50, 1);
    document.getElementById("p99").textContent = fmt(s.latency_ms_p99, 1);
    document.getElementById("frames").textContent = s.frames || 0;
    document.getElementById("defects").textContent = s.defects || 0;
    document.getElementById("saved").textContent = s.calibration_saved || 0;
    const reasons = document.getElementById("reasons"); reasons.textContent = "";
    (s.reasons || []).forEach((t) => reasons.append(el("li", {class: "warn"}, t)));
    Object.entries(s.sources || {}).forEach(([name, src]) => {
      const img = document.getElementById("img-" + name) || card(name);
      document.getElementById("label-" + name).textContent = name + "  frame " + src.index + ", " +
        src.defects + " defect(s)";
      if (src.seq > 0 && seen[name] !== src.seq) { seen[name] = src.seq;
        img.src = "/frame/" + encodeURIComponent(name) + ".jpg" + q({seq: src.seq}); } });
    const body = document.getElementById("verdicts"); body.textContent = "";
    (s.verdicts || []).forEach((v) => { const tr = el("tr", {class: v.verdict});
      [new Date(v.ts * 1000).toLocaleTimeString(), v.source, v.index].forEach((t) => tr.append(el("td", {}, t)));
      tr.append(el("td", {class: "v"}, v.verdict));
      tr.append(el("td", {}, v.defects ? v.defects + " (" + v.classes.join(", ") + ")" : "0"));
      tr.append(el("td", {}, fmt(v.latency_ms, 1))); body.append(tr); });
  } catch (e) { document.getElementById("health").textContent = "view unreachable"; }
  setTimeout(poll, 500);
}
poll();
</script></body></html>
"""
