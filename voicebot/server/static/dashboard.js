// The supervisor dashboard (templates/dashboard.html).
const csrf = document.querySelector("meta[name=csrf-token]").content;
const $ = (id) => document.getElementById(id);
const pct = (v) => (v === null ? "–" : `${(v * 100).toFixed(1)} %`);
const sec = (v) => (v === null ? "–" : `${v.toFixed(1)} s`);
const ms = (v) => (v === null ? "–" : `${Math.round(v)} ms`);
window.dashboard = { data: null }; // for the browser tests

function barChart(pairs, format) {
  // Inline SVG: one horizontal bar per label, scaled to the largest value.
  const max = Math.max(1, ...pairs.map(([, v]) => v || 0));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", "600"); svg.setAttribute("height", String(24 * pairs.length + 4));
  pairs.forEach(([label, value], i) => {
    const text = document.createElementNS(ns, "text");
    text.setAttribute("x", "0"); text.setAttribute("y", String(24 * i + 16)); text.textContent = label;
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", "180"); bar.setAttribute("y", String(24 * i + 4)); bar.setAttribute("height", "16");
    bar.setAttribute("width", String(Math.max(1, 340 * (value || 0) / max))); bar.setAttribute("fill", "#4a7bd0");
    const figure = document.createElementNS(ns, "text");
    figure.setAttribute("x", String(186 + 340 * (value || 0) / max)); figure.setAttribute("y", String(24 * i + 16));
    figure.textContent = format(value);
    svg.append(text, bar, figure);
  });
  return svg;
}

function table(element, header, rows) {
  const tr = (cells, tag) => { const r = document.createElement("tr"); for (const c of cells) { const e = document.createElement(tag); e.textContent = c; r.append(e); } return r; };
  element.replaceChildren(tr(header, "th"), ...rows.map((row) => tr(row, "td")));
}

async function refresh() {
  const response = await fetch(`/api/dashboard?window=${$("window").value}`);
  if (!response.ok) return;
  const data = await response.json();
  window.dashboard.data = data;
  // One line per alert; the banner is hidden while there is none.
  $("alerts").replaceChildren(...data.alerts.map((alert) => {
    const line = document.createElement("p"); line.dataset.kind = alert.kind; line.textContent = alert.message; return line;
  }));
  $("alerts").hidden = data.alerts.length === 0;
  const k = data.kpis;
  const tiles = [
    ["Calls", k.calls], ["Containment", pct(k.containment_rate)], ["Answered", k.answered], ["Abandoned", k.abandoned],
    ["ASA", sec(k.asa_s)], ["Average wait", sec(k.average_wait_s)], ["Abandonment rate", pct(k.abandonment_rate)],
    ["Avg time to abandon", sec(k.average_time_to_abandon_s)], ["Service level 20 s", pct(k.service_level_20s)],
    ["AHT", sec(k.aht_s)], ["FCR", pct(k.fcr)], ["Callbacks", k.callbacks],
    ["Interrupted", k.interrupted],
    ["Erlang C ASA (now)", sec(data.forecast.asa_s)], ["Erlang C SL 20 s (now)", pct(data.forecast.service_level_20s)],
  ];
  $("kpis").replaceChildren(...tiles.map(([label, value]) => {
    const tile = document.createElement("div"); tile.className = "kpi"; tile.dataset.kpi = label;
    const b = document.createElement("b"); b.textContent = value; tile.append(b, label); return tile;
  }));
  const names = data.language_names || {};
  const languageName = (code) => (names[code] && names[code] !== code ? `${names[code]} (${code})` : code);
  const count = (v) => (v === null || v === undefined ? "–" : String(v));
  table($("by-language"),
    ["Language", "Calls", "Containment", "Transfer rate", "Answered", "Abandoned", "ASA", "Avg wait",
     "Abandon rate", "SL 20 s", "AHT", "Callbacks", "Interrupted"],
    Object.entries(k.by_language || {}).map(([code, f]) => [
      languageName(code), count(f.calls), pct(f.containment_rate), pct(f.transfer_rate),
      count(f.answered), count(f.abandoned), sec(f.asa_s), sec(f.average_wait_s), pct(f.abandonment_rate),
      pct(f.service_level_20s), sec(f.aht_s), count(f.callbacks), count(f.interrupted)]));
  for (const row of $("by-language").querySelectorAll("tr")) {
    const code = Object.keys(k.by_language || {})[row.rowIndex - 1];
    if (code) row.dataset.language = code;
  }
  $("transfers").replaceChildren(barChart(Object.entries(k.transfer_rate_by_reason), pct));
  $("latency").replaceChildren(barChart([["p50", k.turn_latency_p50_ms], ["p95", k.turn_latency_p95_ms]], ms));
  const waiting = Object.entries(data.live.queues).flatMap(([queue, calls]) => calls.map((c) => [queue, c.call_id, languageName(c.language), c.reason, sec(c.waiting_s), c.offered_to || ""]));
  table($("queues"), ["Queue", "Call", "Language", "Reason", "Waiting", "Offered to"], waiting);
  table($("agents"), ["Agent", "State", "For", "Speaks", "Queues"], data.live.agents.map((a) => [
    a.username, a.state, sec(a.for_s), (a.languages || []).join(", "), (a.queues || []).join(", ") || "all"]));
  table($("agents-window"),
    ["Agent", "Handled", "AHT", "Talk", "Hold (total)", "Wrap-up", "Occupancy", "Resolved / Follow-up / Transferred"],
    data.agents_figures.map((a) => [
      a.username, count(a.handled), sec(a.aht_s), sec(a.talk_s), sec(a.hold_s), sec(a.wrap_up_s), pct(a.occupancy),
      [a.dispositions.resolved, a.dispositions.follow_up, a.dispositions.transferred].join(" / ")]));
}

$("reload").onclick = async () => {
  $("reload-result").textContent = "reloading…";
  const response = await fetch("/admin/reload", { method: "POST", headers: { "X-CSRF-Token": csrf } });
  $("reload-result").textContent = response.ok ? "reloaded" : `failed (${response.status})`;
};
$("window").onchange = refresh;
refresh();
setInterval(refresh, 2000);
