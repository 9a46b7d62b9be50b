// The caller softphone (templates/softphone.html).
import { PcmAudio } from "/static/phone-audio.js";

const status = document.getElementById("status");
const log = document.getElementById("log");
const callButton = document.getElementById("call");
const hangupButton = document.getElementById("hangup");
const languageChoice = document.getElementById("language");
// The browser's own language, where the bot serves it ("es-MX" -> es).
const preferred = (navigator.language || "").split("-")[0];
if ([...languageChoice.options].some((option) => option.value === preferred)) languageChoice.value = preferred;
// The number this browser calls from: one per browser, kept, so the desk sees a returning caller's
// earlier calls (a tester may type another to be someone else).
const callerId = document.getElementById("caller-id");
callerId.value = localStorage.getItem("voicebot-caller-id") || `web-${Math.random().toString(36).slice(2, 10)}`;
const keepCallerId = () => localStorage.setItem("voicebot-caller-id", callerId.value.trim());
keepCallerId();
callerId.onchange = keepCallerId;
const phone = { audio: null, ws: null, messages: [], state: "idle" };
window.phone = phone; // for the browser tests
// The media socket takes this page's token (templates/softphone.html), good for ttlS seconds from
// when the page was served; a page open longer fetches a fresh one (a minute spare for clock drift).
const tokenElement = document.getElementById("media-token");
const mediaToken = {
  value: tokenElement.dataset.token,
  ttlS: Number(tokenElement.dataset.ttlS),
  since: performance.now(),
};

async function currentToken() {
  if (performance.now() - mediaToken.since < (mediaToken.ttlS - 60) * 1000) return mediaToken.value;
  const response = await fetch("/media/token", { cache: "no-store" });
  if (!response.ok) throw new Error(`no media token (${response.status})`);
  const fresh = await response.json();
  Object.assign(mediaToken, { value: fresh.token, ttlS: fresh.ttl_s, since: performance.now() });
  return mediaToken.value;
}

function note(text) {
  const item = document.createElement("li");
  item.textContent = text;
  log.prepend(item);
}

function show(message) {
  phone.messages.push(message);
  if (message.type === "started") { phone.state = "bot"; status.textContent = "Connected"; }
  else if (message.type === "clear") { phone.audio.clear(); }
  else if (message.type === "transfer") { phone.state = "queued"; status.textContent = "Transferring to an agent…"; }
  else if (message.type === "queue") {
    status.textContent = `Position ${message.position} in line, about ${Math.ceil(message.estimated_wait_s / 60)} min`;
  } else if (message.type === "agent_connected") { phone.state = "agent"; status.textContent = `Talking to ${message.agent}`; }
  else if (message.type === "callback_scheduled") { status.textContent = "We will call you back"; }
  else if (message.type === "hangup") { status.textContent = "Call ended"; }
  if (message.type !== "clear") note(JSON.stringify(message));
}

async function call() {
  callButton.disabled = true;
  let token;
  try {
    token = await currentToken();
  } catch (error) {
    status.textContent = "Could not connect: please reload the page";
    note(String(error));
    callButton.disabled = false;
    return;
  }
  phone.audio = new PcmAudio();
  await phone.audio.start();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/media?token=${encodeURIComponent(token)}`);
  ws.binaryType = "arraybuffer";
  phone.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    ws.send(JSON.stringify({ type: "start", caller_id: callerId.value.trim() || "web-softphone", language: languageChoice.value }));
    phone.audio.onFrame = (frame) => { if (ws.readyState === WebSocket.OPEN) ws.send(frame); };
    hangupButton.disabled = false;
  };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") show(JSON.parse(event.data));
    else phone.audio.play(event.data);
  };
  ws.onclose = () => {
    if (!opened) status.textContent = "Could not connect: please try again, or reload the page";
    phone.state = "ended";
    phone.audio.stop();
    callButton.disabled = false;
    hangupButton.disabled = true;
  };
}

function hangup() {
  if (phone.ws && phone.ws.readyState === WebSocket.OPEN) {
    phone.ws.send(JSON.stringify({ type: "hangup" }));
    phone.ws.close();
  }
}

for (const key of "123456789*0#") {
  const button = document.createElement("button");
  button.textContent = key;
  button.dataset.key = key;
  button.onclick = () => {
    if (phone.ws && phone.ws.readyState === WebSocket.OPEN) phone.ws.send(JSON.stringify({ type: "dtmf", digit: key }));
  };
  document.getElementById("keypad").append(button);
}
callButton.onclick = call;
hangupButton.onclick = hangup;
