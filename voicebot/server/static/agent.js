// The agent desk (templates/agent.html).
import { PcmAudio } from "/static/phone-audio.js";
import { DeskFormat, fill, words } from "/static/desk-format.js";

const csrf = document.querySelector("meta[name=csrf-token]").content;
const $ = (id) => document.getElementById(id);
const desk = {
  state: "connecting", offer: null, wrapUp: null, messages: [], audio: null, connections: 0,
  call: null, // the last "call" message: hold, mute, who is on the call, a transfer under way
  live: [], // every live transcript line received
  targets: null, // the last transfer_targets
  settings: null, // wrap_up_limit_s
  callId: null, // the call the desk shows (offered, on or being wrapped up)
};
desk.staysClosed = false; // true once the server said this page is done: the desk is open elsewhere
window.desk = desk; // for the browser tests
const me = $("desk-bar").dataset.username;

// The labels in the agent's UI language (English where it has none), the served languages' names
// and directions: from labels/<language>.yml, rendered into the page by the server.
const texts = JSON.parse($("desk-texts").textContent);
const label = (key) => texts.labels[key] ?? key;
const labelOr = (key, fallback) => texts.labels[key] ?? fallback;
const languageInfo = (code) => texts.languages[code] || { name: code, direction: "ltr" };
const format = new DeskFormat(texts.ui_language, texts.time_zone);  // the agent's zone, or the browser's
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

function make(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined && text !== null) element.textContent = text;
  return element;
}

const isolated = (text) => make("bdi", "", text);  // a name inside a sentence keeps its own direction
const iso = (text) => `\u2068${text ?? ""}\u2069`;  // the same inside a label's text (first strong isolate)

const show = (id, on) => $(id).classList.toggle("hidden", !on);
const now = () => Date.now() / 1000;

// ----- the connection ---------------------------------------------------------------------------

// The desk's WebSocket, opened again after it drops (a network blip, a server restart) with
// back-off: the server then sends the seat's state, a wrap-up left open with its screen pop. What
// ends the desk for good comes as a message (signed_in_elsewhere, signed_out), not a close code.
const scheme = location.protocol === "https:" ? "wss" : "ws";
const RETRY_FIRST_MS = 1000;
const RETRY_MOST_MS = 30000;
let ws = null;
let retries = 0;
const open = () => ws !== null && ws.readyState === WebSocket.OPEN;
const send = (message) => { if (open()) ws.send(JSON.stringify(message)); };
const signIn = () => { location.href = "/login?next=/agent"; };

function connect() {
  ws = new WebSocket(`${scheme}://${location.host}/agent/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { retries = 0; desk.connections += 1; };
  ws.onmessage = receive;
  ws.onclose = closed;
}

function closed() {
  showState("disconnected");
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
  showState("reconnecting");
  connect();
}

// ----- notices ----------------------------------------------------------------------------------

function notify(text, kind = "info") {
  $("notice-text").textContent = text;
  $("notice").dataset.kind = kind;
  show("notice", true);
}

// ----- the seat's state -------------------------------------------------------------------------

function showState(state) {
  desk.state = state;
  const badge = $("state");
  badge.textContent = label(`state_${state}`);
  badge.dataset.state = state;
  document.body.dataset.state = state;
  // Ready / not ready only between calls (a wrap-up ends with its disposition).
  const seated = state === "ready" || state === "not_ready";
  for (const [id, pressed] of [["ready", state === "ready"], ["not-ready", state === "not_ready"]]) {
    $(id).disabled = !seated;
    $(id).setAttribute("aria-pressed", String(pressed));
  }
}

// ----- the screen pop ---------------------------------------------------------------------------

function rows(table, header, pairs, language) {
  // Cells given as [text] are the caller's words (their direction and language), others plain.
  const head = document.createElement("tr");
  for (const key of header) head.append(make("th", "", label(key)));
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

function speakerName(speaker) {
  if (speaker === me) return label("speaker_you");
  const key = { Caller: "speaker_caller", Bot: "speaker_bot" }[speaker];
  return key ? label(key) : speaker;
}

function transcriptLine(line, language) {
  const item = make("p", "line");
  item.dataset.speaker = line.speaker;
  if (line.speaker === me) item.classList.add("own");
  const speaker = make("b", "", `${speakerName(line.speaker)}: `);
  const text = callerText(document.createElement("span"), line.text, language);
  text.className = "line-text";
  item.append(speaker, text);
  return item;
}

function showQueue(queue, ...details) {
  const queueName = isolated(queue);  // a queue's name keeps its own direction
  const separator = label("list_separator");
  $("offer-queue").replaceChildren("(", queueName, ...details.map((detail) => `${separator}${detail}`), ")");
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
  $("pop-summary").textContent = pop.summary || "";
  show("pop-summary", Boolean(pop.summary));
  rows($("pop-intents"), ["said", "intent", "confidence", "decision"],
       (pop.intents || []).map((i) => [[i.text], i.intent, Number(i.confidence).toFixed(2), i.decision]), language);
  rows($("pop-slots"), ["slot", "value"],
       Object.entries(pop.slots || {}).map(([name, value]) => [words(name), [String(value)]]), language);
  // A table without rows, a path without steps: not shown.
  $("pop-intents").closest(".pop-tables > div").classList.toggle("hidden", !(pop.intents || []).length);
  $("pop-slots").closest(".pop-tables > div").classList.toggle("hidden", !Object.keys(pop.slots || {}).length);
  $("pop-path").parentElement.classList.toggle("hidden", !(pop.menu_path || []).length);
  $("pop-path").textContent = (pop.menu_path || []).join(" › ");
  $("pop-transcript").replaceChildren(...(pop.transcript || []).map((line) => transcriptLine(line, language)));
  $("offer").classList.remove("hidden");
}

// ----- customer panel and caller history --------------------------------------------------------

function showCustomer(customer) {
  show("customer", Boolean(customer));
  if (!customer) return;
  $("customer-name").textContent = customer.title || "";
  $("customer-facts").replaceChildren(...(customer.facts || []).flatMap(([name, value]) => {
    const dd = make("dd", "", String(value));
    dd.dir = "auto";
    return [make("dt", "", name), dd];
  }));
  $("customer-tables").replaceChildren(...(customer.tables || []).map((data) => {
    const wrap = make("div", "scroll");
    const table = make("table", "compact");
    if (data.title) table.append(make("caption", "", data.title));
    const head = document.createElement("tr");
    for (const column of data.columns || []) head.append(make("th", "", column));
    table.append(head);
    for (const cells of data.rows || []) {
      const row = document.createElement("tr");
      for (const cell of cells) { const td = make("td", "", String(cell ?? "")); td.dir = "auto"; row.append(td); }
      table.append(row);
    }
    wrap.append(table);
    return wrap;
  }));
}

function repeatSentence(repeat) {
  let text = fill(label("repeat_caller"), { count: format.number(repeat.count), days: format.number(repeat.window_days) });
  if (repeat.topic && repeat.topic_count > 0) {
    text += label("list_separator") + fill(label("repeat_topic"), {
      topic_count: format.number(repeat.topic_count), topic: iso(words(repeat.topic)),
    });
  }
  return text;
}

function contactItem(contact) {
  const item = make("details", "contact");
  item.dataset.callId = contact.call_id;
  const head = make("summary", "contact-head");
  const when = make("span", "contact-when", format.dateTimeOf(contact.started_at));
  const language = languageInfo(contact.language);
  const spoken = make("span", "contact-language", language.name);
  spoken.lang = contact.language; spoken.dir = language.direction;
  const topics = make("span", "contact-intents", (contact.intents || []).map(words).join(label("list_separator")));
  head.append(when, spoken, topics);
  const result = contact.queue_result
    ? labelOr(`queue_${contact.queue_result}`, words(contact.queue_result))
    : contact.outcome ? labelOr(`outcome_${contact.outcome}`, words(contact.outcome)) : "";
  if (result) head.append(make("span", `chip result-${contact.queue_result || contact.outcome}`, result));
  if (contact.callback_pending) head.append(make("span", "chip warn", label("callback_pending")));
  item.append(head);

  const body = make("div", "contact-body");
  body.append(make("p", "muted", labelOr(`matched_${contact.matched_by}`, contact.matched_by)));
  if (contact.summary) { const p = make("p", "summary", contact.summary); p.dir = "auto"; body.append(p); }
  for (const handled of contact.handled || []) {
    const p = make("p", "handled");
    p.append(fill(label("handled_by"), { agent: iso(handled.agent) }), " · ",
             make("b", "", labelOr(handled.disposition, words(handled.disposition))), " · ",
             fill(label("talk_duration"), { duration: format.clock(handled.talk_s) }));
    if (handled.hold_s > 0) p.append(" · ", fill(label("hold_total"), { duration: format.clock(handled.hold_s) }));
    body.append(p);
    if (handled.notes) { const notes = make("p", "handled-notes", handled.notes); notes.dir = "auto"; body.append(notes); }
  }
  if ((contact.transcript || []).length) {
    const lines = make("div", "transcript");
    lines.append(...contact.transcript.map((line) => transcriptLine(line, contact.language)));
    body.append(make("h4", "", label("transcript")), lines);
  }
  item.append(body);
  return item;
}

function showHistory(history) {
  show("history-panel", Boolean(history));
  if (!history) return;
  const repeat = history.repeat;
  show("repeat-flag", Boolean(repeat));
  $("repeat-flag").textContent = repeat ? repeatSentence(repeat) : "";
  const contacts = history.contacts || [];
  const items = contacts.map(contactItem);
  if (items.length) items[0].open = true; // the last contact is read first: shown unfolded
  $("history").replaceChildren(...(items.length ? items : [make("p", "muted", label("history_none"))]));
}

function showSide(extras) {
  showCustomer(extras ? extras.customer : null);
  showHistory(extras ? extras.history : null);
  const side = Boolean(extras && (extras.customer || extras.history));
  show("desk-side", side);
  $("desk-grid").classList.toggle("single", !side);
}

// ----- a call: its offer, its controls ----------------------------------------------------------

function newCall(callId) {
  // Another call than the one shown: what belonged to the last one goes.
  if (desk.callId === callId) return;
  desk.callId = callId;
  desk.call = null;
  desk.transferredCall = null;
  $("live-transcript").replaceChildren();
  show("live-empty", true);
  closeTransferPanel();
}

function showTransferNote(from, note, mode) {
  // The first agent's note, prominent: in the offer (a consult says what accepting does) and the call.
  show("offer-transfer-note", Boolean(from || note));
  const key = { cold: "transfer_note_from", warm: "consult_explained" }[mode] || "note_from";
  $("offer-transfer-from").textContent = from ? fill(label(key), { agent: iso(from) }) : "";
  $("offer-transfer-text").textContent = note || "";
  show("offer-transfer-text", Boolean(note));
}

function showOffer(message) {
  newCall(message.call_id);
  desk.offer = message;
  showQueue(message.queue, label("waited").replace("{seconds}", format.number(Math.round(message.waited_s))));
  showPop(message.pop);
  showSide(message);
  const transfer = message.transfer;
  if (transfer && transfer.mode === "warm") {
    $("call-title-text").textContent = fill(label("incoming_consult"), { agent: iso(transfer.from_agent) });
  } else if (transfer) {
    $("call-title-text").textContent = fill(label("incoming_transfer"), { agent: iso(transfer.from_agent) });
  } else {
    $("call-title-text").textContent = label("incoming_call");
  }
  showTransferNote(transfer ? transfer.from_agent : null, transfer ? transfer.note : "", transfer && transfer.mode);
  $("accept").disabled = false;
  renderCall();
}

function hideCall() {
  $("offer").classList.add("hidden");
  closeTransferPanel();
  renderCall();
}

function membersText(member) {
  let text;
  if (member.role === "supervisor") text = fill(label(member.mode === "barge" ? "member_barge" : "member_whisper"), { name: iso(member.name) });
  else text = fill(label("member_talk"), { name: iso(member.name) });
  return member.muted ? `${text} (${label("member_muted")})` : text;
}

function renderCall() {
  const talking = desk.state === "talking";
  const offered = desk.state === "offered" && desk.offer !== null && desk.offer.call_id === desk.callId;
  const call = talking && desk.call && desk.call.call_id === desk.callId ? desk.call : null;
  show("call-bar", offered || talking);
  show("accept", offered);
  show("live-panel", talking || (desk.state === "wrap_up" && $("live-transcript").childElementCount > 0));
  for (const id of ["hold", "mute", "transfer", "ask-supervisor", "hangup"]) show(id, talking);
  show("call-timers", talking);
  if (talking) {
    $("call-title-text").textContent = call && call.consulting ? label("consult") : label("on_call");
    if (desk.offer && desk.offer.call_id === desk.callId) showQueue(desk.offer.queue);
  }
  if (desk.state === "wrap_up") $("call-title-text").textContent = label("last_call");
  const onHold = Boolean(call && call.on_hold);
  const muted = Boolean(call && call.muted);
  const transfer = call ? call.transfer : null;
  const consulting = Boolean(call && call.consulting);

  const hold = $("hold");
  hold.setAttribute("aria-pressed", String(onHold));
  hold.textContent = label(onHold ? "resume" : "hold");
  hold.disabled = !call || consulting || (onHold && transfer !== null && transfer.state === "waiting");
  const mute = $("mute");
  mute.setAttribute("aria-pressed", String(muted));
  mute.textContent = label(muted ? "unmute" : "mute");
  mute.disabled = !call;
  show("muted-flag", talking && muted);
  show("hold-box", talking && onHold);
  $("transfer").disabled = !call || consulting || transfer !== null;
  if ($("transfer").disabled) closeTransferPanel();
  const asked = Boolean(call && call.supervisor_requested);
  const ask = $("ask-supervisor");
  ask.setAttribute("aria-pressed", String(asked));
  ask.textContent = label(asked ? "supervisor_requested" : "ask_supervisor");
  ask.disabled = !call || asked;

  // A transfer under way: waiting for its target, or consulting them (either side of it).
  show("transfer-box", Boolean(call && (transfer || consulting)));
  if (call && consulting) {
    const from = desk.offer && desk.offer.transfer ? desk.offer.transfer.from_agent : "";
    $("transfer-status").textContent = fill(label("consulting"), { agent: iso(from) });
    show("complete-transfer", false);
    show("cancel-transfer", true);
  } else if (call && transfer) {
    const target = transfer.agent || transfer.queue || "";
    const key = transfer.state === "connected" ? "transfer_connected" : "transfer_waiting";
    $("transfer-status").textContent = fill(label(key), { target: iso(target) });
    show("complete-transfer", transfer.state === "connected");
    show("cancel-transfer", transfer.mode === "warm");
  }

  // Who else is on the call; a supervisor silently monitoring is not shown.
  const others = call ? (call.members || []).filter((m) => m.name !== me && m.mode !== "monitor") : [];
  show("members", others.length > 0);
  $("members").replaceChildren(...others.map((member) => {
    const item = make("li", `member ${member.role}`, membersText(member));
    item.dataset.mode = member.mode;
    return item;
  }));
  if (call) {
    const from = desk.offer && desk.offer.transfer ? desk.offer.transfer.from_agent : null;
    if (call.transfer_note) showTransferNote(from, call.transfer_note, call.consulting ? "" : "cold");
  }
  tick();
}

async function accept() {
  const button = $("accept");
  button.disabled = true;
  try {
    desk.audio = desk.audio || new PcmAudio();
    if (!desk.audio.context) {
      await desk.audio.start();
      desk.audio.onFrame = (frame) => { if (desk.state === "talking" && open()) ws.send(frame); };
    }
  } catch (error) {
    button.disabled = false;
    notify(fill(label("microphone_failed"), { error: error.message || String(error) }), "error");
    desk.audio = null;
    return;
  }
  send({ type: "accept", call_id: desk.offer.call_id });
}

// ----- live transcript --------------------------------------------------------------------------

function addLiveLine(message) {
  desk.live.push(message);
  if (message.call_id !== desk.callId) return;
  const box = $("live-transcript");
  const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  const language = desk.offer && desk.offer.call_id === desk.callId ? desk.offer.pop.language
    : desk.wrapUp && desk.wrapUp.pop ? desk.wrapUp.pop.language : texts.ui_language;
  box.append(transcriptLine(message, language));
  show("live-empty", false);
  if (atEnd) box.scrollTop = box.scrollHeight;
}

// ----- transfers --------------------------------------------------------------------------------

function openTransferPanel() {
  show("transfer-panel", true);
  $("transfer").setAttribute("aria-expanded", "true");
  const select = $("transfer-target");
  select.replaceChildren(make("option", "", label("loading")));
  select.firstChild.value = "";
  $("transfer-go").disabled = true;
  send({ type: "transfer_targets" });
  select.focus();
}

function closeTransferPanel() {
  show("transfer-panel", false);
  $("transfer").setAttribute("aria-expanded", "false");
}

function showTargets(message) {
  desk.targets = message;
  const select = $("transfer-target");
  const choose = make("option", "", label("choose"));
  choose.value = "";
  const queues = document.createElement("optgroup");
  queues.label = label("transfer_queues");
  for (const queue of message.queues || []) {
    const option = make("option", "", queue);
    option.value = `queue:${queue}`;
    queues.append(option);
  }
  const agents = document.createElement("optgroup");
  agents.label = label("transfer_agents");
  for (const agent of message.agents || []) {
    const spoken = (agent.languages || []).map((code) => languageInfo(code).name).join(label("list_separator"));
    const option = make("option", "", `${agent.username} — ${label(`state_${agent.state}`)}${spoken ? ` · ${spoken}` : ""}`);
    option.value = `agent:${agent.username}`;
    agents.append(option);
  }
  const groups = [choose];
  if (queues.childElementCount) groups.push(queues);
  if (agents.childElementCount) groups.push(agents);
  else groups.push(Object.assign(make("option", "", label("no_agents")), { disabled: true, value: "-" }));
  select.replaceChildren(...groups);
  $("transfer-go").disabled = true;
}

function transfer() {
  const [kind, ...rest] = $("transfer-target").value.split(":");
  const target = rest.join(":");
  if (!target || (kind !== "queue" && kind !== "agent")) return;
  const mode = $("transfer-mode-warm").checked ? "warm" : "cold";
  send({ type: "transfer", mode, [kind]: target, note: $("transfer-note").value });
  $("transfer-note").value = "";
  closeTransferPanel();
}

// ----- wrap-up ----------------------------------------------------------------------------------

function showWrapUp(wrapUp, callId) {
  // The call just ended, or the desk came back to an unfinished wrap-up: its pop and talk times.
  const fresh = !desk.wrapUp || desk.wrapUp.talk_started_at !== wrapUp.talk_started_at || desk.wrapUpCall !== callId;
  if (callId) newCall(callId);
  desk.wrapUp = wrapUp;
  desk.wrapUpCall = callId;
  const times = [fill(label("talk_times"), {
    start: format.timeOf(wrapUp.talk_started_at),
    end: format.timeOf(wrapUp.talk_ended_at),
    duration: format.clock(wrapUp.talk_ended_at - wrapUp.talk_started_at),
  })];
  if (wrapUp.hold_s > 0) times.push(fill(label("hold_total"), { duration: format.clock(wrapUp.hold_s) }));
  $("wrapup-times").textContent = times.join(" · ");
  if (fresh) {
    // A new wrap-up: no disposition yet ("transferred" when this agent transferred the call).
    $("disposition").value = desk.transferredCall && desk.transferredCall === callId ? "transferred" : "";
    $("notes").value = "";
    desk.submitting = false;
  }
  updateDone();
  if (wrapUp.pop) {
    if (!desk.offer || desk.offer.call_id !== callId) showSide(wrapUp);  // back after a reload: the wrap-up's own
    showQueue(wrapUp.pop.queue);
    showPop(wrapUp.pop);
  } else {
    $("offer").classList.add("hidden");  // a call without a stored handoff record: its id and times only
  }
  renderCall();
}

function updateDone() {
  const chosen = $("disposition").value !== "";
  $("submit-wrapup").disabled = !chosen || desk.submitting === true;
  $("submit-wrapup").title = chosen ? "" : label("disposition_required");
}

// ----- timers -----------------------------------------------------------------------------------

function tick() {
  const t = now();
  const call = desk.state === "talking" && desk.call && desk.call.call_id === desk.callId ? desk.call : null;
  $("talk-timer").textContent = format.clock(call && call.talk_started_at ? t - call.talk_started_at : 0);
  if (call && call.on_hold) {
    // This hold so far (the server's hold_s already counts it, with the holds before it).
    $("hold-timer").textContent = format.clock(call.held_since ? t - call.held_since : 0);
  }
  if (desk.state === "wrap_up" && desk.wrapUp) {
    const elapsed = t - desk.wrapUp.talk_ended_at;
    $("wrapup-timer").textContent = format.clock(elapsed);
    const limit = desk.settings ? Number(desk.settings.wrap_up_limit_s) : 0;
    const overdue = limit > 0 && elapsed > limit;
    $("wrapup-timer").classList.toggle("overdue", overdue);
    $("wrapup").classList.toggle("overdue", overdue);
    show("wrapup-overdue", overdue);
  }
}
setInterval(tick, 500);

// ----- messages ---------------------------------------------------------------------------------

const ENDED = {
  caller: "ended_caller", transferred: "ended_transferred",
  transfer_cancelled: "ended_transfer_cancelled", desk_closed: "ended_desk_closed",
};

function receive(event) {
  if (typeof event.data !== "string") { if (desk.audio) desk.audio.play(event.data); return; }
  const message = JSON.parse(event.data);
  desk.messages.push(message);
  switch (message.type) {
    case "settings": desk.settings = message; break;
    case "state": {
      showState(message.state);
      show("wrapup", message.state === "wrap_up");
      if (message.wrap_up) showWrapUp(message.wrap_up, message.call_id);
      else desk.wrapUp = null;
      if (message.state === "ready" || message.state === "not_ready") hideCall();
      else renderCall();
      break;
    }
    case "offer": showOffer(message); break;
    case "offer_withdrawn":
      if (message.call_id === desk.callId) { hideCall(); notify(label("offer_withdrawn")); }
      break;
    case "connected": newCall(message.call_id); renderCall(); break;
    case "call": desk.call = message; renderCall(); break;
    case "transcript": addLiveLine(message); break;
    case "transfer_targets": showTargets(message); break;
    case "call_ended":
      if (message.by === "transferred") desk.transferredCall = desk.callId;
      closeTransferPanel();
      if (ENDED[message.by]) notify(label(ENDED[message.by]));
      break;
    case "error":  // a click the server refused (a stale offer, a call already over): say why
      notify(message.message, "error");
      desk.submitting = false;
      updateDone();
      break;
    case "signed_in_elsewhere": desk.staysClosed = true; notify(label("signed_in_elsewhere"), "error"); break;
    case "signed_out": desk.staysClosed = true; signIn(); break;
    default: break;
  }
}
connect();

// ----- controls ---------------------------------------------------------------------------------

$("ready").addEventListener("click", () => send({ type: "ready" }));
$("not-ready").addEventListener("click", () => send({ type: "not_ready" }));
$("accept").addEventListener("click", accept);
$("hangup").addEventListener("click", () => send({ type: "hangup" }));
$("hold").addEventListener("click", () => {
  send({ type: desk.call && desk.call.on_hold ? "resume" : "hold" });
});
$("mute").addEventListener("click", () => {
  // The microphone keeps sending: the server mutes, so the muted state has one source.
  send({ type: desk.call && desk.call.muted ? "unmute" : "mute" });
});
$("transfer").addEventListener("click", () => {
  if ($("transfer-panel").classList.contains("hidden")) openTransferPanel(); else closeTransferPanel();
});
$("transfer-close").addEventListener("click", closeTransferPanel);
$("transfer-target").addEventListener("change", () => {
  const value = $("transfer-target").value;
  $("transfer-go").disabled = !(value.startsWith("queue:") || value.startsWith("agent:"));
});
$("transfer-go").addEventListener("click", transfer);
$("complete-transfer").addEventListener("click", () => send({ type: "complete_transfer" }));
$("cancel-transfer").addEventListener("click", () => send({ type: "cancel_transfer" }));
$("ask-supervisor").addEventListener("click", () => send({ type: "request_supervisor" }));
$("notice-close").addEventListener("click", () => show("notice", false));
for (const type of ["change", "input"]) $("disposition").addEventListener(type, updateDone);
$("submit-wrapup").addEventListener("click", () => {
  if (!$("disposition").value) return;  // the disposition is required
  send({ type: "wrap_up", disposition: $("disposition").value, notes: $("notes").value });
  desk.submitting = true;
  updateDone();
  $("notes").value = "";
  $("offer").classList.add("hidden");
});
$("logout").addEventListener("click", async () => {
  await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": csrf } });
  location.href = "/login";
});

// Alt+letter works everywhere, typing in a field included; a letter alone never does anything.
const SHORTCUTS = { KeyA: "accept", KeyH: "hold", KeyM: "mute", KeyX: "hangup", KeyR: "ready" };
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("transfer-panel").classList.contains("hidden")) {
    closeTransferPanel();
    $("transfer").focus();
    return;
  }
  if (!event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const id = SHORTCUTS[event.code];
  if (!id) return;
  event.preventDefault();
  const button = $(id);
  if (!button.disabled && button.offsetParent !== null) button.click();
});
