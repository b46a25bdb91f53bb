// One message view -> DOM, as Discord draws it: header, content, embeds, attachments, components.
import { escapeHtml, markdown, safeUrl } from "./markdown.js";
import { state, me, snowflakeDate } from "./state.js";
import { renderAudio } from "./voice.js";
import { renderVideo } from "./video.js";
import { skuName } from "./shop.js";

const COLORS = ["#5865f2", "#3ba55c", "#faa61a", "#ed4245", "#eb459e", "#747f8d"];

export function avatarColor(id) {
  let h = 0;
  for (const c of String(id)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length];
}

export function avatar(name, id) {
  const el = document.createElement("div");
  el.className = "avatar";
  el.style.background = avatarColor(id);
  el.textContent = (name || "?").trim().charAt(0).toUpperCase();
  return el;
}

function el(tag, className, html) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (html !== undefined) node.innerHTML = html;
  return node;
}

function image(url, alt) {
  const safe = safeUrl(url);
  if (!safe) return null;
  const img = document.createElement("img");
  img.src = safe;
  img.alt = alt || "";
  img.loading = "eager";
  img.dataset.zoom = "1";
  return img;
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

function timeLabel(msg) {
  const d = snowflakeDate(msg.id);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function renderEmbed(embed) {
  const box = el("div", "embed");
  if (embed.color !== undefined && embed.color !== null) box.style.borderLeftColor = `#${Number(embed.color).toString(16).padStart(6, "0")}`;
  if (embed.author?.name) {
    const a = el("div", "embed-author");
    const icon = embed.author.icon_url && image(embed.author.icon_url);
    if (icon) a.appendChild(icon);
    const name = safeUrl(embed.author.url || "") ? el("a", "", escapeHtml(embed.author.name)) : el("span", "", escapeHtml(embed.author.name));
    if (name.tagName === "A") { name.href = embed.author.url; name.target = "_blank"; }
    a.appendChild(name);
    box.appendChild(a);
  }
  if (embed.title) {
    const t = el("div", "embed-title");
    if (safeUrl(embed.url || "")) {
      const link = el("a", "", markdown(embed.title));
      link.href = embed.url; link.target = "_blank"; link.rel = "noreferrer noopener";
      t.appendChild(link);
    } else t.innerHTML = markdown(embed.title);
    box.appendChild(t);
  }
  if (embed.description) box.appendChild(el("div", "embed-description", markdown(embed.description)));
  if (embed.fields?.length) {
    const fields = el("div", "embed-fields");
    for (const f of embed.fields) {
      const field = el("div", `embed-field${f.inline ? " inline" : ""}`);
      field.appendChild(el("div", "embed-field-name", markdown(f.name)));
      field.appendChild(el("div", "embed-field-value", markdown(f.value)));
      fields.appendChild(field);
    }
    box.appendChild(fields);
  }
  if (embed.image?.url) {
    const img = image(embed.image.url, "embed image");
    if (img) { const wrap = el("div", "embed-image"); wrap.appendChild(img); box.appendChild(wrap); }
  }
  if (embed.thumbnail?.url) {
    const img = image(embed.thumbnail.url, "thumbnail");
    if (img) { const wrap = el("div", "embed-thumbnail"); wrap.appendChild(img); box.appendChild(wrap); }
  }
  if (embed.footer?.text || embed.timestamp) {
    const f = el("div", "embed-footer");
    const icon = embed.footer?.icon_url && image(embed.footer.icon_url);
    if (icon) f.appendChild(icon);
    const parts = [];
    if (embed.footer?.text) parts.push(escapeHtml(embed.footer.text));
    if (embed.timestamp) parts.push(escapeHtml(new Date(embed.timestamp).toLocaleString()));
    f.appendChild(el("span", "", parts.join(" • ")));
    box.appendChild(f);
  }
  return box;
}

function renderButton(msg, comp) {
  const emoji = comp.emoji?.name && !comp.emoji.id ? `${comp.emoji.name} ` : "";
  if (comp.style === 6) {  // premium: Discord draws the SKU's shop button; clicking it opens the purchase
    const b = el("button", "component-button style-6 premium", `🛒 ${escapeHtml(skuName(comp.sku_id))}`);
    b.type = "button";
    b.title = "Buy in the shop";
    b.disabled = Boolean(comp.disabled) || msg.loading;
    b.dataset.action = "buy";
    b.dataset.skuId = comp.sku_id;
    return b;
  }
  if (comp.style === 5 && safeUrl(comp.url || "")) {
    const a = el("a", "component-button style-5", `${escapeHtml(emoji + (comp.label || ""))} ↗`);
    a.href = comp.url; a.target = "_blank"; a.rel = "noreferrer noopener";
    return a;
  }
  const b = el("button", `component-button style-${comp.style || 2}`);
  b.type = "button";
  b.textContent = (emoji + (comp.label || "")).trim() || "•";
  b.disabled = Boolean(comp.disabled) || msg.loading;
  b.dataset.customId = comp.custom_id || "";
  b.dataset.messageId = msg.id;
  b.dataset.action = "button";
  return b;
}

function selectOptions(comp) {
  const guild = state.world.guilds.find((g) => g.id === state.guildId);
  if (comp.type === 3) return (comp.options || []).map((o) => [o.value, o.label]);
  if (comp.type === 5) return (guild?.members || []).map((m) => [m.id, m.name]);
  if (comp.type === 6) return (guild?.roles || []).map((r) => [r.id, r.name]);
  if (comp.type === 7) return [...(guild?.members || []).map((m) => [m.id, `@${m.name}`]), ...(guild?.roles || []).map((r) => [r.id, `@${r.name}`])];
  if (comp.type === 8) return (guild?.channels || []).map((c) => [c.id, `#${c.name}`]);
  return [];
}

function renderSelect(msg, comp) {
  const s = el("select", "component-select");
  s.dataset.customId = comp.custom_id || "";
  s.dataset.messageId = msg.id;
  s.dataset.action = "select";
  s.disabled = Boolean(comp.disabled);
  const ph = el("option", "", escapeHtml(comp.placeholder || "Make a selection"));
  ph.value = ""; ph.selected = true; ph.disabled = true;
  s.appendChild(ph);
  for (const [value, label] of selectOptions(comp)) {
    const o = el("option", "", escapeHtml(label));
    o.value = value;
    s.appendChild(o);
  }
  return s;
}

function renderComponents(msg, items, parent) {
  for (const comp of items || []) {
    switch (comp.type) {
      case 1: {
        const row = el("div", "component-row");
        renderComponents(msg, comp.components, row);
        parent.appendChild(row);
        break;
      }
      case 2: parent.appendChild(renderButton(msg, comp)); break;
      case 3: case 5: case 6: case 7: case 8: parent.appendChild(renderSelect(msg, comp)); break;
      case 9: {
        const section = el("div", "section-v2");
        const text = el("div", "");
        renderComponents(msg, comp.components, text);
        section.appendChild(text);
        if (comp.accessory) renderComponents(msg, [comp.accessory], section);
        parent.appendChild(section);
        break;
      }
      case 10: parent.appendChild(el("div", "text-display content", markdown(comp.content))); break;
      case 11: {
        const img = image(comp.media?.url, comp.description);
        if (img) { const wrap = el("div", "thumbnail-v2"); wrap.appendChild(img); parent.appendChild(wrap); }
        break;
      }
      case 12: {
        const gallery = el("div", "media-gallery");
        for (const item of comp.items || []) { const img = image(item.media?.url, item.description); if (img) gallery.appendChild(img); }
        parent.appendChild(gallery);
        break;
      }
      case 13: parent.appendChild(el("div", "attachment-file", `📄 ${escapeHtml(comp.file?.url || "file")}`)); break;
      case 14: parent.appendChild(el("hr", "separator")); break;
      case 17: {
        const box = el("div", "container-v2");
        if (comp.accent_color !== undefined && comp.accent_color !== null) box.style.borderLeftColor = `#${Number(comp.accent_color).toString(16).padStart(6, "0")}`;
        renderComponents(msg, comp.components, box);
        parent.appendChild(box);
        break;
      }
      default: break;
    }
  }
}

// A poll as Discord draws it: the question, one row per answer (no votes in the emulator), the time left.
function renderPoll(poll) {
  const box = el("div", "poll");
  box.appendChild(el("div", "poll-question", escapeHtml(poll.question)));
  box.appendChild(el("div", "poll-hint", poll.multiselect ? "Select one or more answers" : "Select one answer"));
  for (const a of poll.answers) {
    const row = el("div", "poll-answer", `${a.emoji ? escapeHtml(a.emoji) + " " : ""}${escapeHtml(a.text)}`);
    row.dataset.answerId = a.id;
    box.appendChild(row);
  }
  const ends = poll.expiry ? new Date(poll.expiry) : null;
  const hours = ends ? Math.max(0, Math.round((ends - Date.now()) / 3600000)) : null;
  box.appendChild(el("div", "poll-footer", `0 votes${hours !== null ? ` · ${hours}h left` : ""}`));
  return box;
}

function renderAttachments(msg) {
  const box = el("div", "attachments");
  for (const a of msg.attachments) {
    if (a.audio) {
      box.appendChild(renderAudio(msg, a));
    } else if (a.video) {
      box.appendChild(renderVideo(a));
    } else if ((a.content_type || "").startsWith("image/")) {
      const link = el("a", "attachment attachment-image");
      link.href = a.url; link.target = "_blank";
      const img = image(a.url, a.description || a.filename);
      img.dataset.attachmentId = a.id;
      link.appendChild(img);
      box.appendChild(link);
    } else {
      const file = el("div", "attachment attachment-file");
      file.innerHTML = `<span>📄</span><div><a href="${escapeHtml(a.url)}" target="_blank" download="${escapeHtml(a.filename)}">${escapeHtml(a.filename)}</a><div class="size">${formatSize(a.size)}</div></div>`;
      box.appendChild(file);
    }
  }
  return box;
}

// Should `msg` start a new group (avatar + name), or continue the previous one?
export function startsGroup(msg, prev) {
  if (!prev || prev.author.id !== msg.author.id || msg.interaction || msg.reference || prev.ephemeral !== msg.ephemeral) return true;
  return snowflakeDate(msg.id) - snowflakeDate(prev.id) > 5 * 60 * 1000;
}

export function renderMessage(msg, first) {
  const wrap = el("div", `message-wrap${first ? " first" : ""}`);
  wrap.dataset.messageId = msg.id;
  if (msg.interaction) {
    wrap.appendChild(el("div", "context", `<span>↱</span><b>${escapeHtml(msg.interaction.user)}</b> used <span class="mention">/${escapeHtml(msg.interaction.command)}</span>`));
  } else if (msg.reference) {
    wrap.appendChild(el("div", "context", `<span>↱</span><b>@${escapeHtml(msg.reference.author)}</b> <span>${escapeHtml(msg.reference.content || (msg.reference.voice ? "🎙 Voice message" : "(attachment)"))}</span>`));
  }
  const mine = me();
  const row = el("div", "message");
  if (first || msg.interaction || msg.reference) row.classList.add("first");
  if (msg.ephemeral) row.classList.add("ephemeral");
  if (mine && msg.mentions.includes(mine.id)) row.classList.add("mentioned");
  row.dataset.messageId = msg.id;
  row.dataset.author = msg.author.name;
  const gutter = el("div", "gutter");
  if (first || msg.interaction || msg.reference) gutter.appendChild(avatar(msg.author.name, msg.author.id));
  row.appendChild(gutter);
  const body = el("div", "body");
  if (first || msg.interaction || msg.reference) {
    const header = el("div", "header");
    header.innerHTML = `<span class="author${msg.author.bot ? " bot" : ""}">${escapeHtml(msg.author.name)}</span>`
      + (msg.author.bot ? '<span class="tag">APP</span>' : "")
      + `<span class="time">${timeLabel(msg)}</span>`;
    body.appendChild(header);
  }
  if (msg.loading && !msg.content) {
    body.appendChild(el("div", "thinking", `${escapeHtml(msg.author.name)} is thinking<span class="dots"></span>`));
  }
  const content = el("div", "content", markdown(msg.content));
  if (msg.edited && msg.content) {
    const last = content.lastChild;
    const into = last && last.nodeType === 1 && last.tagName !== "PRE" ? last : content;
    into.insertAdjacentHTML("beforeend", '<span class="edited">(edited)</span>');
  }
  body.appendChild(content);
  for (const e of msg.embeds) body.appendChild(renderEmbed(e));
  if (msg.attachments.length) body.appendChild(renderAttachments(msg));
  if (msg.poll) body.appendChild(renderPoll(msg.poll));
  if (msg.components.length) {
    const comps = el("div", "components");
    renderComponents(msg, msg.components, comps);
    body.appendChild(comps);
  }
  if (msg.thread) {
    const link = el("div", "thread-link", `↳ <b>${escapeHtml(msg.thread.name)}</b> — open thread`);
    link.dataset.channelId = msg.thread.id;
    body.appendChild(link);
  }
  if (msg.reactions.length) {
    const r = el("div", "reactions");
    for (const emoji of msg.reactions) r.appendChild(el("span", "reaction", `${escapeHtml(emoji)} 1`));
    body.appendChild(r);
  }
  if (msg.ephemeral) {
    const note = el("div", "ephemeral-note", 'Only you can see this • <button type="button" data-action="dismiss">Dismiss message</button>');
    note.querySelector("button").dataset.messageId = msg.id;
    body.appendChild(note);
  }
  row.appendChild(body);
  const actions = el("div", "actions");
  actions.innerHTML = `<button type="button" data-action="reply" data-message-id="${msg.id}" title="Reply">↩ Reply</button>`
    + `<button type="button" data-action="apps" data-message-id="${msg.id}" title="Apps">⋯ Apps</button>`;
  if (msg.ephemeral) actions.querySelector('[data-action="reply"]').remove();
  row.appendChild(actions);
  wrap.appendChild(row);
  return wrap;
}
