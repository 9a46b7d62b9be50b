// The supervisor's live calls on the dashboard: listen to any call with an agent (both sides), whisper
// to the agent only, or barge in; the call's live transcript; agents asking for help.
import { PcmAudio } from "/static/phone-audio.js";

const $ = (id) => document.getElementById(id);
const supervisor = { messages: [], live: null, monitoring: null, audio: null, transcript: [] };
window.supervisor = supervisor; // for the browser tests
const MODE_NAMES = { monitor: "listening", whisper: "whispering to the agent", barge: "in the call" };
const scheme = location.protocol === "https:" ? "wss" : "ws";
let ws = null;

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function connect() {
  ws = new WebSocket(`${scheme}://${location.host}/supervisor/ws`);
  ws.binaryType = "arraybuffer";
  ws.onmessage = receive;
  ws.onclose = () => { supervisor.monitoring = null; showMonitor(); setTimeout(connect, 2000); };
}

function button(text, onclick, data = {}) {
  const element = document.createElement("button");
  element.textContent = text;
  Object.assign(element.dataset, data);
  element.onclick = onclick;
  return element;
}

function cell(row, content) {
  const td = document.createElement("td");
  if (typeof content === "string") td.textContent = content; else td.append(...content);
  row.append(td);
}

function showCalls(live) {
  const head = document.createElement("tr");
  for (const title of ["Call", "Agents", "On hold", "Transfer", "Supervisors", ""]) {
    const th = document.createElement("th"); th.textContent = title; head.append(th);
  }
  const rows = live.calls.map((call) => {
    const row = document.createElement("tr");
    row.dataset.call = call.call_id;
    const agents = call.members.filter((m) => m.role === "agent").map((m) => m.name + (m.muted ? " (muted)" : ""));
    const supervisors = call.members.filter((m) => m.role === "supervisor").map((m) => `${m.name} (${m.mode})`);
    const transfer = call.transfer ? `${call.transfer.mode} ${call.transfer.state}` : "";
    cell(row, call.call_id);
    cell(row, agents.join(", "));
    cell(row, call.on_hold ? "yes" : "");
    cell(row, transfer);
    cell(row, supervisors.join(", ") + (call.supervisor_requested ? " help asked" : ""));
    cell(row, ["monitor", "whisper", "barge"].map((mode) =>
      button({ monitor: "Listen", whisper: "Whisper", barge: "Barge" }[mode], () => supervise(call.call_id, mode),
             { call: call.call_id, mode })));
    return row;
  });
  $("calls").replaceChildren(head, ...rows);
  const asked = live.calls.filter((call) => call.supervisor_requested);
  $("help-requests").replaceChildren(...asked.map((call) => {
    const line = document.createElement("p");
    const agent = call.members.find((m) => m.role === "agent");
    line.textContent = `${agent ? agent.name : "An agent"} asks for help on call ${call.call_id} `;
    line.append(button("Join", () => supervise(call.call_id, "barge"), { call: call.call_id, mode: "barge" }));
    return line;
  }));
  if (supervisor.monitoring) {
    const call = live.calls.find((c) => c.call_id === supervisor.monitoring.call_id);
    $("monitor-members").textContent = call
      ? `On the call: caller, ${call.members.map((m) => m.name).join(", ")}${call.on_hold ? " · caller on hold" : ""}`
      : "";
  }
}

async function supervise(callId, mode) {
  if (!supervisor.audio) {
    supervisor.audio = new PcmAudio();
    await supervisor.audio.start();
    // The microphone reaches the call only while whispering or barged in.
    supervisor.audio.onFrame = (frame) => {
      const speaking = supervisor.monitoring && supervisor.monitoring.mode !== "monitor";
      if (speaking && ws.readyState === WebSocket.OPEN) ws.send(frame);
    };
  }
  if (!supervisor.monitoring || supervisor.monitoring.call_id !== callId) {
    supervisor.transcript = [];
    $("monitor-transcript").replaceChildren();
  }
  send({ type: mode, call_id: callId });
}

function showMonitor() {
  const monitoring = supervisor.monitoring;
  $("monitor").hidden = !monitoring;
  if (!monitoring) return;
  $("monitor-call").textContent = monitoring.call_id;
  $("monitor-mode").textContent = MODE_NAMES[monitoring.mode];
  for (const mode of ["monitor", "whisper", "barge"]) {
    $(`mode-${mode}`).setAttribute("aria-pressed", String(monitoring.mode === mode));
  }
}

function addLine(message) {
  supervisor.transcript.push(message);
  const line = document.createElement("p");
  line.className = "line";
  line.dataset.speaker = message.speaker;
  const who = document.createElement("b");
  who.textContent = `${message.speaker}: `;
  const text = document.createElement("span");
  text.className = "line-text";
  text.dir = "auto";
  text.textContent = message.text;
  line.append(who, text);
  $("monitor-transcript").append(line);
}

function level(buffer) {
  const samples = new Int16Array(buffer);
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.min(1, Math.sqrt(sum / Math.max(1, samples.length)) / 8000);
}

function receive(event) {
  if (typeof event.data !== "string") {
    $("monitor-level").value = level(event.data);
    if (supervisor.audio) supervisor.audio.play(event.data);
    return;
  }
  const message = JSON.parse(event.data);
  supervisor.messages.push(message);
  if (message.type === "live") { supervisor.live = message; showCalls(message); }
  else if (message.type === "monitoring") { supervisor.monitoring = message; showMonitor(); }
  else if (message.type === "monitor_ended") { supervisor.monitoring = null; showMonitor(); }
  else if (message.type === "transcript") addLine(message);
}

for (const mode of ["monitor", "whisper", "barge"]) {
  $(`mode-${mode}`).onclick = () => { if (supervisor.monitoring) supervise(supervisor.monitoring.call_id, mode); };
}
$("monitor-leave").onclick = () => send({ type: "leave" });
connect();
