// The agent desk (templates/agent.html).
import { PcmAudio } from "/static/phone-audio.js";

const csrf = document.querySelector("meta[name=csrf-token]").content;
const $ = (id) => document.getElementById(id);
const desk = { state: "connecting", offer: null, wrapUp: null, messages: [], audio: null, connections: 0 };
desk.staysClosed = false; // true once the server said this page is done: the desk is open elsewhere
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

// The desk's WebSocket, opened again after it drops (a network blip, a server restart) with
// back-off: the server then sends the seat's state, a wrap-up left open with its screen pop. What
// ends the desk for good comes as a message (signed_in_elsewhere, signed_out), not a close code.
const scheme = location.protocol === "https:" ? "wss" : "ws";
const RETRY_FIRST_MS = 1000;
const RETRY_MOST_MS = 30000;
let ws = null;
let retries = 0;
const send = (message) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); };
const signIn = () => { location.href = "/login?next=/agent"; };

function connect() {
  ws = new WebSocket(`${scheme}://${location.host}/agent/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { retries = 0; desk.connections += 1; };
  ws.onmessage = receive;
  ws.onclose = closed;
}

function closed() {
  desk.state = "disconnected";
  $("state").textContent = label("state_disconnected");
  if (desk.staysClosed) return;
  // Doubling, up to 30 s, with jitter: desks dropped together (a restart) do not all return at once.
  const delay = Math.min(RETRY_MOST_MS, RETRY_FIRST_MS * 2 ** retries) * (0.5 + Math.random() / 2);
  retries += 1;
  setTimeout(reconnect, delay);
}

async function reconnect() {
  // A session that ended meanwhile gets the login page, not endless attempts (the socket would be
  // refused without saying why); a server still down fails the fetch and the socket both.
  const page = await fetch("/agent", { redirect: "manual", cache: "no-store" }).catch(() => null);
  if (page && page.type === "opaqueredirect") { signIn(); return; }
  $("state").textContent = label("state_reconnecting");
  connect();
}

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

function showQueue(queue, ...details) {
  const queueName = document.createElement("bdi");  // a queue's name keeps its own direction
  queueName.textContent = queue;
  $("offer-queue").replaceChildren("(", queueName, ...details.map((detail) => `, ${detail}`), ")");
}

function showOffer(message) {
  desk.offer = message;
  showQueue(message.queue, label("waited").replace("{seconds}", message.waited_s));
  showPop(message.pop);
  $("accept").classList.remove("hidden");
  $("hangup").classList.add("hidden");
}

function showWrapUp(wrapUp) {
  // The call just ended, or the desk came back to an unfinished wrap-up: its pop and talk times.
  desk.wrapUp = wrapUp;
  const time = (seconds) => new Date(seconds * 1000).toLocaleTimeString(texts.ui_language);
  $("wrapup-times").textContent = label("talk_times")
    .replaceAll("{start}", time(wrapUp.talk_started_at))
    .replaceAll("{end}", time(wrapUp.talk_ended_at))
    .replaceAll("{seconds}", Math.round(wrapUp.talk_ended_at - wrapUp.talk_started_at));
  if (!wrapUp.pop) return;  // a call without a stored handoff record: its id and times only
  showQueue(wrapUp.pop.queue);
  showPop(wrapUp.pop);
  $("accept").classList.add("hidden");
  $("hangup").classList.add("hidden");
}

function showPop(pop) {
  const language = pop.language;
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
}

async function accept() {
  desk.audio = desk.audio || new PcmAudio();
  if (!desk.audio.context) {
    await desk.audio.start();
    desk.audio.onFrame = (frame) => { if (desk.state === "talking") ws.send(frame); };
  }
  send({ type: "accept", call_id: desk.offer.call_id });
}

function receive(event) {
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
    if (message.wrap_up) showWrapUp(message.wrap_up); else desk.wrapUp = null;
    if (message.state === "ready" || message.state === "not_ready") $("offer").classList.add("hidden");
  } else if (message.type === "offer") showOffer(message);
  else if (message.type === "offer_withdrawn") $("offer").classList.add("hidden");
  else if (message.type === "connected") { $("accept").classList.add("hidden"); $("hangup").classList.remove("hidden"); }
  else if (message.type === "call_ended") $("hangup").classList.add("hidden");
  else if (message.type === "signed_in_elsewhere") desk.staysClosed = true;
  else if (message.type === "signed_out") { desk.staysClosed = true; signIn(); }
}
connect();

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
