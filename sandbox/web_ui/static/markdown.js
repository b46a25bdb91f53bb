// Discord-flavoured markdown to HTML. Everything is escaped first; only the tags made here exist.
import { state } from "./state.js";

export function escapeHtml(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function safeUrl(url) {
  return /^(https?:\/\/|\/attachments\/)/i.test(url) ? url : null;
}

function formatTimestamp(unix, style) {
  const date = new Date(Number(unix) * 1000);
  if (Number.isNaN(date.getTime())) return null;
  if (style === "R") {
    const secs = Math.round((date.getTime() - Date.now()) / 1000);
    const abs = Math.abs(secs);
    const [n, unit] = abs < 60 ? [abs, "second"] : abs < 3600 ? [Math.round(abs / 60), "minute"]
      : abs < 86400 ? [Math.round(abs / 3600), "hour"] : [Math.round(abs / 86400), "day"];
    const label = `${n} ${unit}${n === 1 ? "" : "s"}`;
    return secs >= 0 ? `in ${label}` : `${label} ago`;
  }
  if (style === "t") return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (style === "T") return date.toLocaleTimeString();
  if (style === "d") return date.toLocaleDateString();
  return date.toLocaleString();
}

// Inline formatting on already-escaped text. Code spans are cut out first so nothing inside them changes.
export function inline(escaped) {
  const stash = [];
  const keep = (html) => `\u0000${stash.push(html) - 1}\u0000`;
  let s = escaped.replace(/`([^`\n]+)`/g, (_, code) => keep(`<code>${code}</code>`));
  s = s.replace(/&lt;@!?(\d+)&gt;/g, (_, id) => keep(`<span class="mention">@${escapeHtml(state.world?.users?.[id] ?? "unknown-user")}</span>`));
  s = s.replace(/&lt;@&amp;(\d+)&gt;/g, (_, id) => keep(`<span class="mention">@${escapeHtml(roleName(id))}</span>`));
  s = s.replace(/&lt;#(\d+)&gt;/g, (_, id) => keep(`<span class="mention channel-mention" data-channel-id="${id}">#${escapeHtml(channelName(id))}</span>`));
  s = s.replace(/&lt;t:(-?\d+)(?::([tTdDfFR]))?&gt;/g, (m, unix, style) => {
    const text = formatTimestamp(unix, style || "f");
    return text ? keep(`<span class="timestamp">${escapeHtml(text)}</span>`) : m;
  });
  s = s.replace(/&lt;a?:(\w+):\d+&gt;/g, (_, name) => keep(`:${name}:`));
  s = s.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, (m, text, url) => keep(`<a href="${url}" target="_blank" rel="noreferrer noopener">${text}</a>`));
  s = s.replace(/(^|[\s(])(https?:\/\/[^\s<]+[^\s<.,;:!?)'"])/g, (m, pre, url) => pre + keep(`<a href="${url}" target="_blank" rel="noreferrer noopener">${url}</a>`));
  s = s.replace(/\*\*\*([^*]+?)\*\*\*/g, "<strong><em>$1</em></strong>")
    .replace(/\*\*([^*]+?)\*\*/g, "<strong>$1</strong>")
    .replace(/__([^_]+?)__/g, "<u>$1</u>")
    .replace(/(^|[^*\w])\*([^*\s][^*]*?)\*(?!\*)/g, "$1<em>$2</em>")
    .replace(/(^|[^_\w])_([^_\s][^_]*?)_(?![_\w])/g, "$1<em>$2</em>")
    .replace(/~~([^~]+?)~~/g, "<s>$1</s>")
    .replace(/\|\|([^|]+?)\|\|/g, '<span class="spoiler" title="Spoiler: click to show">$1</span>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => stash[Number(i)]);
}

function roleName(id) {
  for (const g of state.world?.guilds ?? []) {
    const r = g.roles.find((x) => x.id === id);
    if (r) return r.name;
  }
  return "unknown-role";
}

export function channelName(id) {
  for (const g of state.world?.guilds ?? []) {
    const c = g.channels.find((x) => x.id === id);
    if (c) return c.name;
  }
  return "unknown-channel";
}

// Block-level: code fences, headings, subtext, quotes, lists; the rest is inline text with line breaks kept.
// A code block needs its closing fence, as in Discord: an unclosed ``` is text (its backticks shown), so it
// never swallows the rest of the message.
export function markdown(text) {
  if (!text) return "";
  const out = [];
  const parts = String(text).split(/(```[\s\S]*?```)/g);
  for (const part of parts) {
    if (part.startsWith("```")) {
      const body = part.replace(/^```/, "").replace(/```$/, "");
      const nl = body.indexOf("\n");
      const lang = nl > 0 && /^[\w+#.-]{1,20}$/.test(body.slice(0, nl).trim()) ? body.slice(0, nl).trim() : "";
      const code = lang ? body.slice(nl + 1) : body.replace(/^\n/, "");
      out.push(`<pre${lang ? ` data-lang="${escapeHtml(lang)}"` : ""}><code>${escapeHtml(code.replace(/\n$/, ""))}</code></pre>`);
      continue;
    }
    const lines = part.split("\n");
    const html = [];
    for (const line of lines) {
      const esc = escapeHtml(line);
      let m;
      if ((m = line.match(/^(#{1,3}) (.+)$/))) html.push(`<h${m[1].length}>${inline(escapeHtml(m[2]))}</h${m[1].length}>`);
      else if ((m = line.match(/^-# (.+)$/))) html.push(`<div class="subtext">${inline(escapeHtml(m[1]))}</div>`);
      else if ((m = line.match(/^>>?>? ?(.*)$/)) && line.startsWith(">")) html.push(`<blockquote>${inline(escapeHtml(m[1])) || "&nbsp;"}</blockquote>`);
      else if ((m = line.match(/^(\s*)[-*] (.+)$/))) html.push(`<div class="li" style="padding-left:${8 + m[1].length * 8}px">• ${inline(escapeHtml(m[2]))}</div>`);
      else html.push(inline(esc) + "\n");
    }
    out.push(html.join("").replace(/\n$/, ""));
  }
  return out.join("");
}

export { safeUrl };
