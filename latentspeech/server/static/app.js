// The page of `latentspeech serve`: add a voice (file or microphone), synthesize with streaming playback
// (fetch the raw PCM stream, schedule it on Web Audio as it arrives), then offer the whole wav.
"use strict";

const $ = (id) => document.getElementById(id);
let sampleRate = 16000;
let recorded = null;  // a WAV Blob made from the microphone

function status(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body.error ? body.error.message : resp.statusText;
  } catch (e) {
    return `${resp.status} ${resp.statusText}`;
  }
}

// 16-bit PCM mono samples (Int16Array) -> WAV Blob
function wavBlob(pcm, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const put = (o, s) => { for (let i = 0; i < s.length; i++) header.setUint8(o + i, s.charCodeAt(i)); };
  put(0, "RIFF"); header.setUint32(4, 36 + pcm.byteLength, true); put(8, "WAVE");
  put(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
  header.setUint16(34, 16, true); put(36, "data"); header.setUint32(40, pcm.byteLength, true);
  return new Blob([header, pcm], { type: "audio/wav" });
}

function floatToPcm(x) {
  const out = new Int16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.round(Math.max(-1, Math.min(1, x[i])) * 32767);
  return out;
}

async function loadVoices(select) {
  const resp = await fetch("/v1/voices");
  const body = await resp.json();
  const sel = $("voice");
  sel.innerHTML = "";
  for (const v of body.data) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = v.id;
    sel.appendChild(opt);
  }
  if (select) sel.value = select;
}

async function uploadVoice() {
  const file = $("prompt-file").files[0];
  const blob = file || recorded;
  if (!blob) { status("choose a prompt file or record one first", true); return; }
  const form = new FormData();
  form.append("file", blob, file ? file.name : "recording.wav");
  const name = $("voice-name").value.trim();
  if (name) form.append("name", name);
  status("adding the voice…");
  const resp = await fetch("/v1/voices", { method: "POST", body: form });
  if (!resp.ok) { status(await errorText(resp), true); return; }
  const body = await resp.json();
  await loadVoices(body.id);
  status(`voice ${body.id} added`);
}

async function deleteVoice() {
  const id = $("voice").value;
  if (!id) return;
  const resp = await fetch(`/v1/voices/${encodeURIComponent(id)}`, { method: "DELETE" });
  if (!resp.ok) { status(await errorText(resp), true); return; }
  await loadVoices();
  status(`voice ${id} deleted`);
}

// Microphone: MediaRecorder's compressed clip, decoded by the browser and sent as WAV (the server reads wav/flac/ogg).
let recorder = null;
async function toggleRecord() {
  const button = $("record");
  if (recorder) { recorder.stop(); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    status(`no microphone: ${e.message}`, true);
    return;
  }
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => parts.push(e.data);
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    recorder = null;
    button.textContent = "Record";
    button.classList.remove("recording");
    try {
      const ctx = new AudioContext();
      const audio = await ctx.decodeAudioData(await new Blob(parts).arrayBuffer());
      recorded = wavBlob(floatToPcm(audio.getChannelData(0)), audio.sampleRate);
      ctx.close();
      $("prompt-file").value = "";
      status(`recorded ${audio.duration.toFixed(1)} s: press "Add voice"`);
    } catch (e) {
      status(`could not read the recording: ${e.message}`, true);
    }
  };
  recorder.start();
  button.textContent = "Stop";
  button.classList.add("recording");
  status("recording… press Stop after 3-10 s of speech");
}

// Streaming playback: each piece of PCM becomes an AudioBuffer scheduled right after the previous one.
class Player {
  constructor(rate) {
    try {
      this.ctx = new AudioContext({ sampleRate: rate });
    } catch (e) {
      this.ctx = null;  // no audio output: the wav still comes at the end
    }
    this.rate = rate;
    this.next = 0;
  }
  play(samples) {
    if (!this.ctx || !samples.length) return;
    const buf = this.ctx.createBuffer(1, samples.length, this.rate);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < samples.length; i++) ch[i] = samples[i] / 32768;
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.ctx.destination);
    this.next = Math.max(this.next, this.ctx.currentTime + 0.05);
    src.start(this.next);
    this.next += buf.duration;
  }
}

async function synthesize() {
  const button = $("synthesize");
  const voice = $("voice").value;
  if (!voice) { status("add a voice first", true); return; }
  const request = { model: "latentspeech", input: $("text").value, voice, response_format: "pcm", stream: true };
  if ($("seed").value !== "") request.seed = parseInt($("seed").value, 10);
  button.disabled = true;
  status("synthesizing…");
  const t0 = performance.now();
  try {
    const resp = await fetch("/v1/audio/speech", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    if (!resp.ok) { status(await errorText(resp), true); return; }
    const rate = parseInt(resp.headers.get("X-Sample-Rate") || sampleRate, 10);
    const player = new Player(rate);
    const reader = resp.body.getReader();
    const pieces = [];
    let carry = null, total = 0, first = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let bytes = value;
      if (carry) {  // a sample split across two reads
        bytes = new Uint8Array(carry.length + value.length);
        bytes.set(carry); bytes.set(value, carry.length);
        carry = null;
      }
      const even = bytes.length - (bytes.length % 2);
      if (even < bytes.length) carry = bytes.slice(even);
      if (!even) continue;
      const samples = new Int16Array(bytes.slice(0, even).buffer);
      if (first === null) {
        first = performance.now() - t0;
        status(`playing (first audio after ${first.toFixed(0)} ms)…`);
      }
      pieces.push(samples);
      total += samples.length;
      player.play(samples);
    }
    const pcm = new Int16Array(total);
    let at = 0;
    for (const p of pieces) { pcm.set(p, at); at += p.length; }
    const url = URL.createObjectURL(wavBlob(pcm, rate));
    $("audio").src = url;
    $("download").href = url;
    $("download").hidden = false;
    const secs = (performance.now() - t0) / 1000;
    status(`${(total / rate).toFixed(2)} s of audio in ${secs.toFixed(2)} s (first audio after ${(first || 0).toFixed(0)} ms)`);
  } catch (e) {
    status(`synthesis failed: ${e.message}`, true);
  } finally {
    button.disabled = false;
  }
}

async function init() {
  $("upload").addEventListener("click", uploadVoice);
  $("delete-voice").addEventListener("click", deleteVoice);
  $("record").addEventListener("click", toggleRecord);
  $("synthesize").addEventListener("click", synthesize);
  if (!window.MediaRecorder || !navigator.mediaDevices) $("record").disabled = true;
  try {
    const health = await (await fetch("/health")).json();
    sampleRate = health.sample_rate;
    $("model").textContent = `model ${health.model}, ${health.sample_rate} Hz`;
    await loadVoices();
  } catch (e) {
    status(`server not reachable: ${e.message}`, true);
  }
}

init();
