// Video attachments as Discord draws them: the video inline with the browser's controls (only its
// metadata loaded until played), and above it the file's name and size with a download link. The video
// streams from the emulator's CDN URL, as Discord's client does.
import { escapeHtml, safeUrl } from "./markdown.js";
import { formatSize } from "./voice.js";

export function renderVideo(att) {
  const info = att.video || {};
  const card = document.createElement("div");
  card.className = "attachment attachment-video";
  card.dataset.attachmentId = att.id;
  const meta = document.createElement("div");
  meta.className = "video-file";
  meta.innerHTML = `<a href="${escapeHtml(att.url)}" target="_blank" download="${escapeHtml(att.filename)}">${escapeHtml(att.filename)}</a><span class="size">${formatSize(att.size)}</span>`;
  const video = document.createElement("video");
  video.controls = true;
  video.preload = "metadata";
  video.playsInline = true;
  video.src = safeUrl(info.src || "") || att.url;
  video.addEventListener("error", () => {
    card.classList.add("failed");
    card.title = "This video cannot be played";
  });
  card.append(meta, video);
  return card;
}
