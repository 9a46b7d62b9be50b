// Shared by the softphone and the agent desk: 16 kHz mic capture and playback over a WebSocket.
export const LOUD_RMS = 300; // Int16 RMS above which a received frame counts as signal, not silence

function rms(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  return Math.sqrt(sum / Math.max(1, samples.length));
}

export class PcmAudio {
  constructor() {
    this.stats = { rxFrames: 0, rxLoud: 0, txFrames: 0, txLoud: 0 };
    this.onFrame = null; // set by the page: called with each captured ArrayBuffer (640 bytes)
  }

  async start() {
    this.context = new AudioContext({ sampleRate: 16000 });
    await this.context.audioWorklet.addModule("/static/pcm-worklet.js");
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
    });
    const source = this.context.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.context, "pcm-capture");
    this.capture.port.onmessage = (event) => {
      this.stats.txFrames++;
      if (rms(new Int16Array(event.data)) > LOUD_RMS) this.stats.txLoud++;
      if (this.onFrame) this.onFrame(event.data);
    };
    const mute = this.context.createGain();
    mute.gain.value = 0; // the capture node must reach the destination to be pulled, but silently
    source.connect(this.capture).connect(mute).connect(this.context.destination);
    this.player = new AudioWorkletNode(this.context, "pcm-player");
    this.player.connect(this.context.destination);
    await this.context.resume();
  }

  play(buffer) {
    this.stats.rxFrames++;
    if (rms(new Int16Array(buffer)) > LOUD_RMS) this.stats.rxLoud++;
    if (this.recording && this.recording.length < this.recordLimit) this.recording.push(new Int16Array(buffer.slice(0)));
    if (this.player) this.player.port.postMessage(buffer, [buffer]);
  }

  clear() {
    if (this.player) this.player.port.postMessage("clear");
  }

  record(seconds) {
    // Keeps what is received, exactly as it came, for the browser tests to analyse (recorded()).
    this.recording = [];
    this.recordLimit = Math.ceil((seconds * 1000) / 20);
  }

  recorded() {
    // The frames kept since record(), as base64 of their little-endian 16-bit samples.
    const frames = this.recording || [];
    const bytes = new Uint8Array(frames.reduce((total, frame) => total + frame.byteLength, 0));
    let at = 0;
    for (const frame of frames) { bytes.set(new Uint8Array(frame.buffer), at); at += frame.byteLength; }
    let text = "";
    for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
    return btoa(text);
  }

  resetStats() {
    this.stats = { rxFrames: 0, rxLoud: 0, txFrames: 0, txLoud: 0 };
  }

  stop() {
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close();
    this.stream = this.context = this.player = this.capture = null;
  }
}
