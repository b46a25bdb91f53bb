// Gatecord sandbox page: live state over a websocket, the channel list, the message list, member switch.
import { post } from "./api.js";
import { notify } from "./notices.js";
import { renderMessage, startsGroup, avatar } from "./render.js";
import { state, me, channel, guildOf, visibleCommands, isVisible } from "./state.js";
import { initComposer, refreshComposer, setReply } from "./composer.js";
import { initRelay, refreshRelay } from "./relay.js";
import { initShop, refreshShop, buy } from "./shop.js";
import { escapeHtml } from "./markdown.js";

const $ = (sel) => document.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// live updates
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/live`);
  ws.onopen = () => setConnection(true);
  ws.onmessage = (ev) => apply(JSON.parse(ev.data));
  ws.onclose = () => { setConnection(false); setTimeout(connect, 1000); };
}

function setConnection(ok) {
  state.connected = ok;
  const label = $("#connection");
  label.textContent = ok ? "" : "reconnecting…";
  document.body.dataset.connected = ok ? "1" : "0";
}

function apply(event) {
  switch (event.type) {
    case "snapshot":
      state.world = event.world;
      state.commands = event.commands;
      state.messages = new Map(event.messages.map((m) => [m.id, m]));
      state.typing = event.typing;
      state.shop = event.shop;
      if (!state.channelId || !channel(state.channelId)) state.channelId = event.world.default_channel_id;
      state.guildId = guildOf(state.channelId)?.id;
      renderAll();
      document.body.dataset.ready = "1";
      break;
    case "world":
      state.world = event.world;
      renderPersonas(); renderGuilds(); renderChannels(); renderMessages();
      break;
    case "commands":
      state.commands = event.commands;
      refreshComposer(); refreshRelay();
      break;
    case "messages":
      for (const m of event.messages) {
        const known = state.messages.has(m.id);
        if (m.deleted) state.messages.delete(m.id); else state.messages.set(m.id, m);
        if (!known && !m.deleted && m.channel_id !== state.channelId && isVisible(m)) state.unread.add(m.channel_id);
      }
      renderChannels();
      renderMessages(event.messages.map((m) => m.id));
      refreshRelay();
      if (!state.info.relay_url) loadInfo();
      break;
    case "shop":
      state.shop = event.shop;
      refreshShop(); renderMessages();
      break;
    case "typing":
      state.typing = event.typing;
      renderTyping();
      break;
    case "notice":
      if (event.user_id === me()?.id) notify(event.text, event.level || "info");
      break;
    case "modal":
      if (event.user_id === me()?.id) openModal(event);
      break;
    default: break;
  }
}

// ---------------------------------------------------------------------------------------------
// layout
function renderAll() {
  renderPersonas(); renderGuilds(); renderChannels(); renderHeader(); renderMessages(); renderTyping();
  refreshComposer(); refreshRelay();
}

function renderPersonas() {
  const select = $("#user-switch");
  const current = me();
  select.innerHTML = "";
  for (const p of state.world.personas) {
    const member = state.world.guilds[0]?.members.find((m) => m.id === p.id);
    const o = document.createElement("option");
    o.value = p.username;
    o.textContent = `${p.name} — ${member?.admin ? "admin" : "member"}`;
    select.appendChild(o);
  }
  select.value = current?.username ?? "";
  const av = avatar(current?.name, current?.id);
  av.id = "me-avatar";
  $("#me-avatar").replaceWith(av);
}

// The member's own DM with the bot (the "Direct Messages" entry lists only the current persona's).
function myDm() {
  const dms = state.world.guilds.find((g) => g.dm);
  return dms?.channels.find((c) => c.recipient === me()?.id);
}

function renderGuilds() {
  const rail = $("#guilds");
  rail.innerHTML = "";
  // Direct Messages first, as in Discord's server rail
  for (const g of [...state.world.guilds.filter((x) => x.dm), ...state.world.guilds.filter((x) => !x.dm)]) {
    const icon = document.createElement("div");
    icon.className = `guild-icon${g.dm ? " dm" : ""}${g.id === state.guildId ? " active" : ""}`;
    icon.title = g.dm ? "Direct Messages" : g.name;
    icon.dataset.guildId = g.id;
    icon.textContent = g.dm ? "DM" : g.name.split(/\s+/).map((w) => w[0]).join("").slice(0, 3);
    icon.addEventListener("click", () => {
      const first = g.dm ? myDm() : g.channels.find((c) => !c.thread);
      if (first) selectChannel(first.id);
    });
    rail.appendChild(icon);
  }
}

// Where Gatecord is not a member, the page says so, and why its commands still work (or do not).
function renderGuildNote(guild) {
  const note = $("#guild-note");
  const bot = state.world.bot.name;
  if (guild.dm || guild.bot_member !== false) {
    note.hidden = true;
    note.textContent = "";
    return;
  }
  const installed = state.world.user_installs.includes(me()?.id);
  note.textContent = installed
    ? `${bot} is not a member of this server. You installed ${bot} to your account, so its commands work here: ` +
      "it answers your commands only, and does not see the server's messages."
    : `${bot} is not a member of this server. Its commands work here only for members who installed it to their account.`;
  note.hidden = false;
}

function renderChannels() {
  const guild = state.world.guilds.find((g) => g.id === state.guildId) ?? state.world.guilds[0];
  $("#guild-name").textContent = guild.name;
  renderGuildNote(guild);
  const box = $("#channels");
  box.innerHTML = `<div class="channel-category">${guild.dm ? "Direct messages" : "Text channels"}</div>`;
  const add = (c) => {
    const item = document.createElement("div");
    item.className = `channel${c.thread ? " thread" : ""}${c.id === state.channelId ? " active" : ""}${state.unread.has(c.id) ? " unread" : ""}`;
    item.setAttribute("role", "listitem");
    item.dataset.channelId = c.id;
    item.innerHTML = `<span class="icon">${channelSign(c, guild.dm)}</span><span class="name">${escapeHtml(c.name)}</span>`;
    item.addEventListener("click", () => selectChannel(c.id));
    box.appendChild(item);
  };
  if (guild.dm) {
    const mine = myDm();
    if (mine) add(mine);
    return;
  }
  for (const c of guild.channels.filter((x) => !x.thread)) {
    add(c);
    for (const t of guild.channels.filter((x) => x.thread && x.parent_id === c.id && !x.archived)) add(t);
  }
}

// A channel's sign, as Discord's client draws it: # text, @ a DM, 💬 a forum, ↳ a thread (a forum's post too).
function channelSign(c, dm = c?.type === 1) {
  return c?.thread ? "↳" : dm ? "@" : c?.forum ? "💬" : "#";
}

function renderHeader() {
  const c = channel(state.channelId);
  const dm = c?.type === 1;
  const sign = channelSign(c, dm);
  $("#channel-name").textContent = c?.name ?? "";
  $("#channel-header .hash").textContent = sign;
  $("#channel-topic").textContent = c?.topic ?? "";
  $("#composer-input").placeholder = dm
    ? `Message @${c.name} — type / for commands`
    : c?.forum ? `New post in ${c.name} — its first line is the title, the rest its first message`
    : `Message ${c?.thread ? "" : "#"}${c?.name ?? ""} — type / for commands, @Gatecord to mention the bot`;
  document.title = `${dm ? "@" : "#"}${c?.name ?? ""} — Gatecord sandbox`;
}

export function selectChannel(id) {
  stick = true;
  document.body.classList.remove("drawer-open");
  state.channelId = id;
  state.guildId = guildOf(id)?.id;
  state.unread.delete(id);
  setReply(null);
  renderGuilds(); renderChannels(); renderHeader(); renderMessages(); renderTyping(); refreshComposer(); refreshRelay();
}

function atBottom(box) {
  return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
}

// Rendered messages are kept by id and reused while their view is unchanged, so a streaming
// answer re-renders one message, and images already shown are not loaded again.
const rendered = new Map(); // id -> {key, node}
let stick = true;

// Re-render the channel's messages; keeps the scroll at the bottom when it was there.
function renderMessages(changedIds) {
  const box = $("#messages");
  // a forum's page lists its posts: a message in one of them changes it too
  const here = (m) => m.channel_id === state.channelId || channel(m.channel_id)?.parent_id === state.channelId;
  if (changedIds && !changedIds.some((id) => !state.messages.has(id) || here(state.messages.get(id)))) return;
  if (channel(state.channelId)?.forum) { renderForum(box); return; }
  const list = [...state.messages.values()]
    .filter((m) => m.channel_id === state.channelId && isVisible(m))
    .sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
  const nodes = [];
  if (!list.length) {
    const c = channel(state.channelId);
    const empty = document.createElement("div");
    empty.className = "empty-channel";
    empty.innerHTML = c?.type === 1
      ? `<h2>${escapeHtml(c.name)}</h2>This is the beginning of your direct messages with <b>${escapeHtml(c.name)}</b>. Write to it, or type <b>/</b> for its commands.`
      : `<h2>Welcome to #${escapeHtml(c?.name ?? "")}!</h2>This is the start of the channel. Type <b>/</b> to see what Gatecord can do, or mention <b>@Gatecord</b>.`;
    nodes.push(empty);
  }
  let prev = null;
  const keep = new Set();
  for (const m of list) {
    const first = startsGroup(m, prev);
    const key = `${first}|${state.persona}|${JSON.stringify(m)}`;
    let entry = rendered.get(m.id);
    if (!entry || entry.key !== key) {
      entry = { key, node: renderMessage(m, first) };
      rendered.set(m.id, entry);
    }
    keep.add(m.id);
    nodes.push(entry.node);
    prev = m;
  }
  for (const id of [...rendered.keys()]) if (!keep.has(id) && !state.messages.has(id)) rendered.delete(id);
  const same = nodes.length === box.childNodes.length && nodes.every((n, i) => box.childNodes[i] === n);
  if (!same) box.replaceChildren(...nodes);
  if (stick) box.scrollTop = box.scrollHeight;
  for (const img of box.querySelectorAll("img")) {
    if (!img.complete) img.addEventListener("load", () => { if (stick) box.scrollTop = box.scrollHeight; }, { once: true });
  }
}

// A forum holds no messages: its posts are listed (newest first), each a thread opened with its first message.
function renderForum(box) {
  const forum = channel(state.channelId);
  const posts = (guildOf(forum.id)?.channels ?? []).filter((c) => c.thread && c.parent_id === forum.id)
    .sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? 1 : -1));
  const nodes = [];
  const head = document.createElement("div");
  head.className = "empty-channel";
  head.innerHTML = `<h2>💬 ${escapeHtml(forum.name)}</h2>` + (posts.length
    ? `${posts.length} post${posts.length === 1 ? "" : "s"}. Open one to read its thread, or write a new post below.`
    : "No posts yet. Write one below: its first line is the title.");
  nodes.push(head);
  for (const p of posts) {
    const inThread = [...state.messages.values()].filter((m) => m.channel_id === p.id && isVisible(m));
    const first = state.messages.get(p.id);  // a post's first message has the thread's id
    const card = document.createElement("div");
    card.className = "forum-post thread-link";
    card.dataset.channelId = p.id;
    const replies = Math.max(0, inThread.length - 1);
    const answered = inThread.some((m) => m.author.bot);
    card.innerHTML = `<div class="forum-title">${escapeHtml(p.name)}</div>` +
      `<div class="muted small">${escapeHtml(first?.author.name ?? "")}: ${escapeHtml((first?.content ?? "").slice(0, 160))}</div>` +
      `<div class="muted small">💬 ${replies} repl${replies === 1 ? "y" : "ies"}${answered ? " · answered by the bot" : ""}</div>`;
    nodes.push(card);
  }
  box.replaceChildren(...nodes);
}

function renderTyping() {
  const left = state.typing[state.channelId];
  $("#typing").textContent = left ? `${state.world.bot.name} is typing…` : "";
}

// ---------------------------------------------------------------------------------------------
// message interactions (buttons, selects, reply, apps, dismiss, lightbox, thread links)
async function onMessagesClick(ev) {
  const target = ev.target.closest("[data-action], [data-zoom], .thread-link, .channel-mention, .spoiler");
  if (!target) return;
  if (target.classList.contains("spoiler")) { target.classList.toggle("shown"); return; }
  if (target.classList.contains("thread-link") || target.classList.contains("channel-mention")) {
    if (channel(target.dataset.channelId)) selectChannel(target.dataset.channelId);
    return;
  }
  if (target.dataset.zoom) {
    ev.preventDefault();
    const box = $("#lightbox");
    box.querySelector("img").src = target.src;
    box.hidden = false;
    return;
  }
  const action = target.dataset.action;
  const id = target.dataset.messageId;
  if (action === "button") {
    target.classList.add("busy");
    try {
      await post("/api/button", { message_id: id, custom_id: target.dataset.customId, user: state.persona });
    } finally { setTimeout(() => target.classList.remove("busy"), 600); }
  } else if (action === "buy") {
    target.disabled = true;
    try { await buy(target.dataset.skuId); } catch { /* shown as a notice */ } finally { target.disabled = false; }
  } else if (action === "reply") {
    setReply(state.messages.get(id));
  } else if (action === "dismiss") {
    state.dismissed.add(id);
    renderMessages();
  } else if (action === "apps") {
    showApps(target, id);
  }
}

function showApps(anchor, messageId) {
  document.querySelectorAll(".apps-menu").forEach((m) => m.remove());
  const apps = visibleCommands(3);
  const menu = document.createElement("div");
  menu.className = "apps-menu";
  if (!apps.length) menu.innerHTML = '<div class="muted small" style="padding:4px 8px">No apps for messages</div>';
  for (const app of apps) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = app.path;
    b.dataset.app = app.path;
    b.addEventListener("click", async () => {
      menu.remove();
      await post("/api/context-menu", { name: app.path, message_id: messageId, user: state.persona });
    });
    menu.appendChild(b);
  }
  anchor.closest(".message").appendChild(menu);
  setTimeout(() => document.addEventListener("click", () => menu.remove(), { once: true }), 0);
}

async function onSelectChange(ev) {
  const s = ev.target;
  if (s.dataset.action !== "select" || !s.value) return;
  await post("/api/select", { message_id: s.dataset.messageId, custom_id: s.dataset.customId, values: [s.value], user: state.persona });
}

// ---------------------------------------------------------------------------------------------
// modals the bot opens
function openModal(event) {
  const dialog = $("#modal");
  $("#modal-title").textContent = event.modal.title || "Form";
  const fields = $("#modal-fields");
  fields.innerHTML = "";
  const inputs = [];
  const walk = (items, labelText) => {
    for (const c of items || []) {
      if (c.type === 1) walk(c.components);
      else if (c.type === 18) walk([c.component], c.label);
      else if (c.type === 4) {
        const label = document.createElement("label");
        label.className = "field";
        label.textContent = labelText || c.label || c.custom_id;
        const input = document.createElement(c.style === 2 ? "textarea" : "input");
        input.value = c.value || "";
        input.placeholder = c.placeholder || "";
        if (c.max_length) input.maxLength = c.max_length;
        input.required = c.required !== false;
        input.dataset.customId = c.custom_id;
        label.appendChild(input);
        fields.appendChild(label);
        inputs.push(input);
      }
    }
  };
  walk(event.modal.components);
  $("#modal-form").onsubmit = async (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(inputs.map((i) => [i.dataset.customId, i.value]));
    dialog.close();
    await post("/api/modal", { interaction_id: event.interaction_id, values, user: state.persona });
  };
  $("#modal-cancel").onclick = () => dialog.close();
  dialog.showModal();
}

// ---------------------------------------------------------------------------------------------
// what the page says about the sandbox itself: where the bot's web server is, what is kept
let infoLoading = false;
async function loadInfo() {
  if (infoLoading) return;
  infoLoading = true;
  try {
    const info = await (await fetch("/api/info")).json();
    state.info = info;
    $("#persistence").textContent = info.persistence || "";
    $("#persistence").hidden = !info.persistence;
    refreshRelay();
  } catch { /* shown again on the next update */ } finally {
    infoLoading = false;
  }
}

// ---------------------------------------------------------------------------------------------
function init() {
  $("#messages").addEventListener("click", onMessagesClick);
  $("#messages").addEventListener("scroll", () => { stick = atBottom($("#messages")); });
  $("#messages").addEventListener("change", onSelectChange);
  $("#lightbox").addEventListener("click", () => { $("#lightbox").hidden = true; });
  // Phones: the channel list is a drawer, opened from the header and closed by a touch outside it.
  $("#sidebar-toggle").addEventListener("click", (ev) => { ev.stopPropagation(); document.body.classList.toggle("drawer-open"); });
  $("#main").addEventListener("click", () => document.body.classList.remove("drawer-open"));
  $("#user-switch").addEventListener("change", (ev) => {
    state.persona = ev.target.value;
    localStorage.setItem("gatecord.persona", state.persona);
    const c = channel(state.channelId);
    if (c?.type === 1 && c.recipient !== me()?.id) {  // a DM is one member's: show the new persona's own
      const mine = myDm();
      if (mine) { state.channelId = mine.id; state.guildId = guildOf(mine.id)?.id; }
    }
    renderAll();
  });
  initComposer({ onSent: () => { const box = $("#messages"); box.scrollTop = box.scrollHeight; } });
  initRelay({ selectChannel });
  initShop();
  loadInfo();
  connect();
}

init();
