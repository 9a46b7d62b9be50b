// Microphone capture (Float32 -> 20 ms Int16 frames) and playback of Int16 frames, at 16 kHz.
const FRAME = 320;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
  }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) {
        const s = Math.max(-1, Math.min(1, channel[i]));
        this.frame[this.filled++] = s < 0 ? s * 32768 : s * 32767;
        if (this.filled === FRAME) {
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(FRAME);
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

class PlayerProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frames = [];
    this.offset = 0;
    this.port.onmessage = (event) => {
      if (event.data === "clear") {
        this.frames = [];
        this.offset = 0;
        return;
      }
      this.frames.push(new Int16Array(event.data));
      if (this.frames.length > 50) this.frames.splice(0, this.frames.length - 50); // keep latency < 1 s
    };
  }
  process(inputs, outputs) {
    const out = outputs[0][0];
    for (let i = 0; i < out.length; i++) {
      if (!this.frames.length) { out[i] = 0; continue; }
      const frame = this.frames[0];
      out[i] = frame[this.offset++] / 32768;
      if (this.offset >= frame.length) { this.frames.shift(); this.offset = 0; }
    }
    return true;
  }
}

registerProcessor("pcm-capture", CaptureProcessor);
registerProcessor("pcm-player", PlayerProcessor);
