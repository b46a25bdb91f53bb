// Audio attachments as Discord draws them: a voice message (flag 8192) is a compact pill with a
// blurple play button, its waveform as bars and its duration; any other audio file is a file card
// with the same player. The audio streams from the emulator's CDN URL, as Discord's client does.
import { escapeHtml, safeUrl } from "./markdown.js";

const SVG = "http://www.w3.org/2000/svg";
const MAX_BARS = 64;        // a 256-sample waveform is drawn as peaks of 4 samples
const BAR_STEP = 3;         // viewBox units per bar: 2 of bar, 1 of gap
const WAVE_HEIGHT = 32;
const MIN_BAR = 3;          // silence still shows as a dot, as on Discord
const ICON_PLAY = '<svg viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M8 5.5v13a1 1 0 0 0 1.5.86l11-6.5a1 1 0 0 0 0-1.72l-11-6.5A1 1 0 0 0 8 5.5Z"/></svg>';
const ICON_PAUSE = '<svg viewBox="0 0 24 24" aria-hidden="true"><rect fill="currentColor" x="6" y="5" width="4" height="14" rx="1"/><rect fill="currentColor" x="14" y="5" width="4" height="14" rx="1"/></svg>';

const ICON_NOTE = '<svg class="audio-icon" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor" d="M19 3.2a1 1 0 0 0-1.2-1l-9 2A1 1 0 0 0 8 5.2v9.93A3.5 3.5 0 1 0 10 18V10l7-1.56v4.69A3.5 3.5 0 1 0 19 16Z"/></svg>';

let current = null; // the <audio> playing now: starting another one pauses it

// base64 -> amplitudes 0..255 (at most 256 of them); null when absent or not base64.
export function decodeWaveform(b64) {
  if (typeof b64 !== "string" || !b64) return null;
  try {
    const raw = atob(b64);
    if (!raw.length) return null;
    return Uint8Array.from(raw.slice(0, 256), (ch) => ch.charCodeAt(0));
  } catch { return null; }
}

// At most `max` bars: the peak of each bucket of samples.
export function toBars(samples, max = MAX_BARS) {
  if (samples.length <= max) return [...samples];
  const out = [];
  for (let i = 0; i < max; i += 1) {
    const from = Math.floor((i * samples.length) / max);
    const to = Math.max(from + 1, Math.floor(((i + 1) * samples.length) / max));
    let peak = 0;
    for (let j = from; j < to; j += 1) peak = Math.max(peak, samples[j]);
    out.push(peak);
  }
  return out;
}

// 7.4 -> "0:07", 75 -> "1:15"; "-:--" when unknown.
export function formatDuration(secs) {
  if (typeof secs !== "number" || !Number.isFinite(secs) || secs < 0) return "-:--";
  const whole = Math.round(secs);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

function waveform(values) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "audio-wave");
  svg.setAttribute("viewBox", `0 0 ${values.length * BAR_STEP - 1} ${WAVE_HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Waveform");
  values.forEach((v, i) => {
    const h = Math.max(MIN_BAR, Math.round((v / 255) * WAVE_HEIGHT));
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "bar");
    bar.setAttribute("x", String(i * BAR_STEP));
    bar.setAttribute("y", String((WAVE_HEIGHT - h) / 2));
    bar.setAttribute("width", "2");
    bar.setAttribute("height", String(h));
    bar.setAttribute("rx", "1");
    bar.dataset.value = String(v);
    svg.appendChild(bar);
  });
  return svg;
}

function el(tag, className, html) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (html !== undefined) node.innerHTML = html;
  return node;
}

// The player alone: play/pause, bars (or a plain track without a waveform), the time.
export function audioPlayer(att, voice) {
  const info = att.audio || {};
  const known = typeof info.duration_secs === "number" && Number.isFinite(info.duration_secs) ? info.duration_secs : null;
  const values = decodeWaveform(info.waveform);
  const box = el("div", `audio-player${voice ? " voice" : ""}`);
  box.dataset.attachmentId = att.id;
  box.dataset.bars = values ? String(Math.min(values.length, MAX_BARS)) : "0";
  const audio = document.createElement("audio");
  audio.preload = known === null ? "metadata" : "none";
  audio.src = safeUrl(info.src || "") || att.url;
  const button = el("button", "audio-play", ICON_PLAY);
  button.type = "button";
  button.setAttribute("aria-label", voice ? "Play voice message" : `Play ${att.filename}`);
  const bars = values ? waveform(toBars(values)) : null;
  const track = bars || el("div", "audio-track", '<div class="audio-progress"></div>');
  const time = el("span", "audio-time");
  let total = known;
  const showTotal = () => { time.textContent = formatDuration(total); box.dataset.duration = time.textContent; };
  showTotal();

  let frame = 0;
  const paint = () => {
    const length = total || audio.duration;
    const at = Number.isFinite(length) && length > 0 ? Math.min(1, audio.currentTime / length) : 0;
    if (bars) {
      const rects = bars.children;
      const upto = Math.round(at * rects.length);
      for (let i = 0; i < rects.length; i += 1) rects[i].classList.toggle("played", i < upto);
    } else {
      track.firstChild.style.width = `${at * 100}%`;
    }
    if (audio.currentTime > 0 && !audio.ended) time.textContent = formatDuration(audio.currentTime);
    else showTotal();
  };
  const loop = () => {
    if (!box.isConnected) { audio.pause(); return; } // re-rendered away: never play on unseen
    paint();
    if (!audio.paused) frame = requestAnimationFrame(loop);
  };
  audio.addEventListener("play", () => {
    if (current && current !== audio) current.pause();
    current = audio;
    box.classList.add("playing");
    button.innerHTML = ICON_PAUSE;
    button.setAttribute("aria-label", "Pause");
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(loop);
  });
  audio.addEventListener("pause", () => {
    box.classList.remove("playing");
    button.innerHTML = ICON_PLAY;
    button.setAttribute("aria-label", voice ? "Play voice message" : `Play ${att.filename}`);
    paint();
  });
  audio.addEventListener("ended", () => { audio.currentTime = 0; paint(); });
  audio.addEventListener("loadedmetadata", () => {
    if (total === null && Number.isFinite(audio.duration)) { total = audio.duration; paint(); }
  });
  audio.addEventListener("error", () => {
    box.classList.add("failed");
    box.title = "This audio cannot be played";
  });
  button.addEventListener("click", () => {
    if (audio.paused) audio.play().catch(() => box.classList.add("failed"));
    else audio.pause();
  });
  track.addEventListener("click", (ev) => { // seek, as on Discord
    const length = total || audio.duration;
    if (!Number.isFinite(length) || length <= 0) return;
    const rect = track.getBoundingClientRect();
    audio.currentTime = Math.max(0, Math.min(1, (ev.clientX - rect.left) / rect.width)) * length;
    paint();
  });
  box.append(button, track, time, audio);
  return box;
}

export function formatSize(n) {
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

// A voice message's pill, or an audio file's card (name, size, then the player).
export function renderAudio(msg, att) {
  if (msg.voice) {
    const wrap = el("div", "attachment attachment-voice");
    wrap.appendChild(audioPlayer(att, true));
    return wrap;
  }
  const card = el("div", "attachment attachment-audio");
  card.innerHTML = `<div class="audio-file">${ICON_NOTE}<div><a href="${escapeHtml(att.url)}" target="_blank" download="${escapeHtml(att.filename)}">${escapeHtml(att.filename)}</a><div class="size">${formatSize(att.size)}</div></div></div>`;
  card.appendChild(audioPlayer(att, false));
  return card;
}
