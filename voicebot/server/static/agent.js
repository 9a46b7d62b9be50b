// The agent desk (templates/agent.html).
import { PcmAudio } from "/static/phone-audio.js";

const csrf = document.querySelector("meta[name=csrf-token]").content;
const $ = (id) => document.getElementById(id);
const desk = { state: "connecting", offer: null, messages: [], audio: null };
window.desk = desk; // for the browser tests

// The labels in the agent's UI language (English where it has none), the served languages' names
// and directions: from labels/<language>.yml, rendered into the page by the server.
const texts = JSON.parse($("desk-texts").textContent);
const label = (key) => texts.labels[key] ?? key;
const languageInfo = (code) => texts.languages[code] || { name: code, direction: "ltr" };
const RTL_LETTER = /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF]/;
const LTR_LETTER = /[A-Za-z\u00C0-\u024F\u0370-\u052F]/;

function direction(text) {
  // The first strong letter decides, as dir="auto" does; "auto" when there is none (digits only).
  for (const character of text) {
    if (RTL_LETTER.test(character)) return "rtl";
    if (LTR_LETTER.test(character)) return "ltr";
  }
  return "auto";
}

function callerText(element, text, language) {
  // The caller's words in their script's direction, tagged with their language.
  element.textContent = text;
  element.dir = direction(text);
  if (element.dir === "auto" || element.dir === languageInfo(language).direction) element.lang = language;
  return element;
}

const scheme = location.protocol === "https:" ? "wss" : "ws";
const ws = new WebSocket(`${scheme}://${location.host}/agent/ws`);
ws.binaryType = "arraybuffer";
const send = (message) => ws.send(JSON.stringify(message));

function rows(table, header, pairs, language) {
  // Cells given as [text] are the caller's words (their direction and language), others plain.
  const head = document.createElement("tr");
  for (const key of header) { const th = document.createElement("th"); th.textContent = label(key); head.append(th); }
  table.replaceChildren(head, ...pairs.map((cells) => {
    const row = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (Array.isArray(cell)) callerText(td, cell[0], language); else td.textContent = cell;
      row.append(td);
    }
    return row;
  }));
}

function transcriptLine(line, language) {
  const item = document.createElement("p");
  item.className = "line";
  item.dataset.speaker = line.speaker;
  const speaker = document.createElement("b");
  const key = { Caller: "speaker_caller", Bot: "speaker_bot" }[line.speaker];
  speaker.textContent = `${key ? label(key) : line.speaker}: `;
  const text = callerText(document.createElement("span"), line.text, language);
  text.className = "line-text";
  item.append(speaker, text);
  return item;
}

function showOffer(message) {
  const pop = message.pop;
  desk.offer = message;
  const language = pop.language;
  const waited = label("waited").replace("{seconds}", message.waited_s);
  const queueName = document.createElement("bdi");  // a queue's name keeps its own direction
  queueName.textContent = message.queue;
  $("offer-queue").replaceChildren("(", queueName, `, ${waited})`);
  $("pop-reason").textContent = pop.reason;
  const spoken = $("pop-language");  // the caller's language by its own name: "Español"
  spoken.textContent = languageInfo(language).name;
  spoken.lang = language; spoken.dir = languageInfo(language).direction;
  spoken.dataset.language = language; spoken.title = language;
  $("pop-auth").textContent = pop.auth_level;
  $("pop-caller").textContent = pop.caller_id;
  $("pop-summary").textContent = pop.summary;
  rows($("pop-intents"), ["said", "intent", "confidence", "decision"],
       pop.intents.map((i) => [[i.text], i.intent, i.confidence.toFixed(2), i.decision]), language);
  rows($("pop-slots"), ["slot", "value"],
       Object.entries(pop.slots).map(([name, value]) => [name, [String(value)]]), language);
  $("pop-path").textContent = pop.menu_path.join(" > ");
  $("pop-transcript").replaceChildren(...pop.transcript.map((line) => transcriptLine(line, language)));
  $("offer").classList.remove("hidden");
  $("accept").classList.remove("hidden");
  $("hangup").classList.add("hidden");
}

async function accept() {
  desk.audio = desk.audio || new PcmAudio();
  if (!desk.audio.context) {
    await desk.audio.start();
    desk.audio.onFrame = (frame) => { if (desk.state === "talking") ws.send(frame); };
  }
  send({ type: "accept", call_id: desk.offer.call_id });
}

ws.onmessage = (event) => {
  if (typeof event.data !== "string") { if (desk.audio) desk.audio.play(event.data); return; }
  const message = JSON.parse(event.data);
  desk.messages.push(message);
  const item = document.createElement("li");
  item.textContent = message.type === "offer" ? `offer ${message.call_id}` : JSON.stringify(message);
  $("log").prepend(item);
  if (message.type === "state") {
    desk.state = message.state;
    $("state").textContent = label(`state_${message.state}`);
    $("wrapup").classList.toggle("hidden", message.state !== "wrap_up");
    if (message.state === "ready" || message.state === "not_ready") $("offer").classList.add("hidden");
  } else if (message.type === "offer") showOffer(message);
  else if (message.type === "offer_withdrawn") $("offer").classList.add("hidden");
  else if (message.type === "connected") { $("accept").classList.add("hidden"); $("hangup").classList.remove("hidden"); }
  else if (message.type === "call_ended") $("hangup").classList.add("hidden");
};
ws.onclose = () => { desk.state = "disconnected"; $("state").textContent = label("state_disconnected"); };

$("ready").onclick = () => send({ type: "ready" });
$("not-ready").onclick = () => send({ type: "not_ready" });
$("accept").onclick = accept;
$("hangup").onclick = () => send({ type: "hangup" });
$("submit-wrapup").onclick = () => {
  send({ type: "wrap_up", disposition: $("disposition").value, notes: $("notes").value });
  $("notes").value = "";
  $("offer").classList.add("hidden");
};
$("logout").onclick = async () => {
  await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
  location.href = "/login";
};
