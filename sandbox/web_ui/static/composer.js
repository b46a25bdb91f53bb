// The composer: plain messages with files, and slash commands with their options, read from the
// commands the bot registered (choices, member/channel/role pickers, attachments, and the bot's own
// autocomplete answers).
import { post } from "./api.js";
import { escapeHtml } from "./markdown.js";
import { notify } from "./notices.js";
import { state, visibleCommands } from "./state.js";

const $ = (sel) => document.querySelector(sel);
const T = { SUB: 1, GROUP: 2, STRING: 3, INTEGER: 4, BOOLEAN: 5, USER: 6, CHANNEL: 7, ROLE: 8, MENTIONABLE: 9, NUMBER: 10, ATTACHMENT: 11 };
const MAX_VOICE_BYTES = 25 * 1024 * 1024; // Discord's upload limit (the server checks it too)
const TYPE_HINT = { 3: "text", 4: "whole number", 5: "true / false", 6: "member", 7: "channel", 8: "role", 9: "member or role", 10: "number", 11: "file" };

const c = {
  command: null,       // the selected command entry {path, description, options}
  shown: [],           // option names shown (required first, then the optional ones added)
  files: [],           // files attached to a plain message
  suggestions: [],
  selected: 0,
  acSeq: 0,
  onSent: () => {},
};

export function initComposer({ onSent }) {
  c.onSent = onSent;
  const input = $("#composer-input");
  input.addEventListener("input", () => { autoGrow(input); updateSuggestions(); });
  input.addEventListener("keydown", onInputKey);
  $("#composer").addEventListener("submit", (ev) => { ev.preventDefault(); submit(); });
  $("#command-cancel").addEventListener("click", () => cancelCommand(true));
  $("#reply-cancel").addEventListener("click", () => setReply(null));
  $("#file-input").addEventListener("change", (ev) => { addFiles(ev.target.files); ev.target.value = ""; });
  $("#voice-input").addEventListener("change", (ev) => { const f = ev.target.files[0]; ev.target.value = ""; sendVoice(f); });
  const main = $("#main");
  main.addEventListener("dragover", (ev) => ev.preventDefault());
  main.addEventListener("drop", (ev) => { ev.preventDefault(); if (ev.dataTransfer?.files?.length) addFiles(ev.dataTransfer.files); });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape" && !ev.defaultPrevented && c.command && !document.querySelector(".ac-list")) cancelCommand(true); });
}

// Called when the commands, the member or the channel change.
export function refreshComposer() {
  if (c.command) {
    const still = visibleCommands(1).find((x) => x.path === c.command.path);
    if (!still) cancelCommand(false); else c.command = still;
  }
  updateSuggestions();
}

export function setReply(msg) {
  state.replyTo = msg ? msg.id : null;
  $("#reply-bar").hidden = !msg;
  if (msg) {
    $("#reply-text").innerHTML = `Replying to <b>${escapeHtml(msg.author.name)}</b>`;
    $("#composer-input").focus();
  }
}

function autoGrow(el) {
  el.style.height = "auto";
  el.style.height = `${Math.min(el.scrollHeight, 200)}px`;
}

// ---------------------------------------------------------------------------------------------
// files on plain messages
function addFiles(list) {
  for (const f of list) c.files.push(f);
  renderFiles();
}

function renderFiles() {
  const box = $("#file-chips");
  box.innerHTML = "";
  c.files.forEach((f, i) => {
    const chip = document.createElement("div");
    chip.className = "chip";
    if (f.type.startsWith("image/")) {
      const img = document.createElement("img");
      img.src = URL.createObjectURL(f);
      chip.appendChild(img);
    }
    chip.insertAdjacentHTML("beforeend", `<span>${escapeHtml(f.name)}</span>`);
    const rm = document.createElement("button");
    rm.type = "button"; rm.textContent = "✕"; rm.title = "Remove";
    rm.addEventListener("click", () => { c.files.splice(i, 1); renderFiles(); });
    chip.appendChild(rm);
    box.appendChild(chip);
  });
}

// An audio file sent as a voice message (the server converts it to Ogg/Opus when needed).
async function sendVoice(file) {
  if (!file) return;
  if (file.size > MAX_VOICE_BYTES) {
    notify(`${file.name} is ${(file.size / 1024 / 1024).toFixed(1)} MiB: a voice message can be at most 25 MiB.`, "error");
    return;
  }
  const button = $("#voice-button");
  button.classList.add("busy");
  button.setAttribute("aria-busy", "true");
  try {
    await post("/api/voice-message", { user: state.persona, channel_id: state.channelId, reply_to: state.replyTo }, [["audio", file]]);
    setReply(null);
    c.onSent();
  } catch {
    /* the notice says why */
  } finally {
    button.classList.remove("busy");
    button.removeAttribute("aria-busy");
  }
}

// ---------------------------------------------------------------------------------------------
// command suggestions ("/" in the composer)
function matches(text) {
  const q = text.slice(1).toLowerCase();
  const all = visibleCommands(1);
  const exact = all.filter((x) => q === x.path || q.startsWith(`${x.path} `));
  if (exact.length) return exact.sort((a, b) => b.path.length - a.path.length).slice(0, 1);
  return all.filter((x) => x.path.startsWith(q) || (q && x.path.includes(q))).sort((a, b) => a.path.localeCompare(b.path));  // every match: the box scrolls, as Discord's list does
}

function updateSuggestions() {
  const box = $("#command-suggestions");
  const text = $("#composer-input").value;
  if (c.command || !text.startsWith("/")) { box.hidden = true; c.suggestions = []; return; }
  c.suggestions = matches(text);
  c.selected = Math.min(c.selected, Math.max(c.suggestions.length - 1, 0));
  box.innerHTML = `<div class="suggestion-title">Commands matching ${escapeHtml(text)}</div>`;
  if (!c.suggestions.length) box.insertAdjacentHTML("beforeend", '<div class="ac-empty">No commands match (some are only for admins).</div>');
  c.suggestions.forEach((cmd, i) => {
    const item = document.createElement("div");
    item.className = `suggestion${i === c.selected ? " selected" : ""}`;
    item.setAttribute("role", "option");
    item.dataset.path = cmd.path;
    item.innerHTML = `<span class="path">/${escapeHtml(cmd.path)}</span><span class="desc">${escapeHtml(cmd.description)}</span>`;
    item.addEventListener("mousedown", (ev) => { ev.preventDefault(); chooseCommand(cmd); });
    box.appendChild(item);
  });
  box.hidden = false;
}

function onInputKey(ev) {
  if (c.suggestions.length && !$("#command-suggestions").hidden) {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      c.selected = (c.selected + (ev.key === "ArrowDown" ? 1 : -1) + c.suggestions.length) % c.suggestions.length;
      updateSuggestions();
      return;
    }
    if (ev.key === "Tab" || (ev.key === "Enter" && !ev.shiftKey)) {
      ev.preventDefault();
      chooseCommand(c.suggestions[c.selected]);
      return;
    }
  }
  if (ev.key === "Enter" && !ev.shiftKey) {
    ev.preventDefault();
    submit();
  }
}

// ---------------------------------------------------------------------------------------------
// the command form
function chooseCommand(cmd) {
  const text = $("#composer-input").value;
  const rest = text.slice(1 + cmd.path.length).trim();
  c.command = cmd;
  c.shown = cmd.options.filter((o) => o.required).map((o) => o.name);
  $("#composer-input").value = "";
  $("#command-suggestions").hidden = true;
  c.suggestions = [];
  renderCommandForm();
  const firstText = cmd.options.find((o) => o.required && o.type === T.STRING && !o.autocomplete && !o.choices?.length);
  if (rest && firstText) optionInput(firstText.name).value = rest;
  focusFirstEmpty();
}

function cancelCommand(keepFocus) {
  c.command = null;
  c.shown = [];
  $("#command-form").hidden = true;
  $("#composer-row").classList.remove("command-mode");
  $("#composer-input").hidden = false;
  $("#attach-button").hidden = false;
  $("#voice-button").hidden = false;
  if (keepFocus) $("#composer-input").focus();
}

function optionInput(name) {
  return document.querySelector(`#command-options .option[data-option="${CSS.escape(name)}"] .opt-input`);
}

function focusFirstEmpty() {
  const inputs = [...document.querySelectorAll("#command-options .opt-input")];
  (inputs.find((i) => !i.value) || inputs[0])?.focus();
}

function renderCommandForm() {
  const cmd = c.command;
  $("#command-form").hidden = false;
  $("#composer-input").hidden = true;
  $("#attach-button").hidden = true;
  $("#voice-button").hidden = true;
  $("#command-pill").textContent = `/${cmd.path}`;
  $("#command-desc").textContent = cmd.description;
  $("#command-error").textContent = "";
  const box = $("#command-options");
  const keep = {};
  for (const name of c.shown) {
    const old = optionInput(name);
    if (old && old.type !== "file") keep[name] = old.value;
    else if (old) keep[name] = old;
  }
  box.innerHTML = "";
  for (const name of c.shown) {
    const opt = cmd.options.find((o) => o.name === name);
    if (!opt) continue;
    const field = renderOption(opt);
    box.appendChild(field);
    const input = field.querySelector(".opt-input");
    if (keep[name] instanceof HTMLInputElement) input.replaceWith(keep[name]);
    else if (keep[name] !== undefined) input.value = keep[name];
  }
  const optional = cmd.options.filter((o) => !c.shown.includes(o.name));
  const opt = $("#command-optional");
  opt.innerHTML = optional.length ? "Optional: " : (cmd.options.length ? "" : "No options: press Enter to run.");
  for (const o of optional) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = o.name;
    b.title = o.description || "";
    b.dataset.addOption = o.name;
    b.addEventListener("click", () => { c.shown.push(o.name); renderCommandForm(); optionInput(o.name)?.focus(); });
    opt.appendChild(b);
  }
}

function choicesFor(opt) {
  const guild = state.world.guilds.find((g) => g.id === state.guildId);
  switch (opt.type) {
    case T.BOOLEAN: return [["true", "True"], ["false", "False"]];
    case T.USER: return (guild?.members || []).map((m) => [m.id, m.name]);
    case T.ROLE: return (guild?.roles || []).map((r) => [r.id, r.name]);
    case T.MENTIONABLE: return [...(guild?.members || []).map((m) => [m.id, `@${m.name}`]), ...(guild?.roles || []).map((r) => [r.id, `@${r.name}`])];
    case T.CHANNEL: return (guild?.channels || [])
      .filter((ch) => !opt.channel_types?.length || opt.channel_types.includes(ch.type))
      .map((ch) => [ch.id, `${ch.thread ? "↳ " : "#"}${ch.name}`]);
    default: return (opt.choices || []).map((ch) => [String(ch.value), ch.name]);
  }
}

function renderOption(opt) {
  const field = document.createElement("div");
  field.className = "option";
  field.dataset.option = opt.name;
  field.title = `${opt.description || ""} (${TYPE_HINT[opt.type] || "value"})`;
  const label = document.createElement("span");
  label.className = `option-name${opt.required ? " required" : ""}`;
  label.textContent = opt.name;
  field.appendChild(label);
  let input;
  const pick = choicesFor(opt);
  if (opt.type === T.ATTACHMENT) {
    input = document.createElement("input");
    input.type = "file";
  } else if (pick.length || [T.BOOLEAN, T.USER, T.ROLE, T.MENTIONABLE, T.CHANNEL].includes(opt.type)) {
    input = document.createElement("select");
    input.innerHTML = `<option value="">${escapeHtml(opt.description ? `— ${opt.description.slice(0, 40)} —` : "—")}</option>`;
    for (const [value, name] of pick) {
      const o = document.createElement("option");
      o.value = value; o.textContent = name;
      input.appendChild(o);
    }
  } else {
    input = document.createElement("input");
    input.type = "text";
    input.placeholder = placeholder(opt);
    if (opt.type === T.INTEGER || opt.type === T.NUMBER) input.inputMode = "decimal";
    if (opt.max_length) input.maxLength = opt.max_length;
    if (opt.type === T.STRING && !opt.autocomplete) field.classList.add("wide");
    if (opt.autocomplete) attachAutocomplete(field, input, opt);
  }
  input.classList.add("opt-input");
  input.dataset.option = opt.name;
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.defaultPrevented && !field.querySelector(".ac-list")) { ev.preventDefault(); submit(); }
  });
  field.appendChild(input);
  if (!opt.required) {
    const rm = document.createElement("button");
    rm.type = "button"; rm.className = "remove-option"; rm.textContent = "✕"; rm.title = "Remove this option";
    rm.addEventListener("click", () => { c.shown = c.shown.filter((n) => n !== opt.name); renderCommandForm(); });
    field.appendChild(rm);
  }
  return field;
}

function placeholder(opt) {
  const parts = [opt.description || TYPE_HINT[opt.type] || ""];
  if (opt.min_value !== undefined || opt.max_value !== undefined) parts.push(`(${opt.min_value ?? "…"}–${opt.max_value ?? "…"})`);
  return parts.join(" ");
}

// The bot's own autocomplete: a type-4 interaction with the option focused, answered with choices.
// A suggestion replaces what was typed only when the member picks it (arrow keys then Enter or Tab,
// a click, or Tab on a list made for exactly the text in the field); Enter otherwise sends what was
// typed. A list made for older text is closed as soon as the text changes and never used.
function attachAutocomplete(field, input, opt) {
  let timer = null;
  let choices = [];
  let selected = -1;     // no suggestion picked until the member moves to one
  let madeFor = null;    // the text the shown list answers
  const close = () => { field.querySelector(".ac-list")?.remove(); choices = []; selected = -1; madeFor = null; };
  const fresh = () => Boolean(field.querySelector(".ac-list")) && madeFor === input.value;
  const pick = (i) => { input.value = String(choices[i].value); close(); };
  const show = () => {
    field.querySelector(".ac-list")?.remove();
    const list = document.createElement("div");
    list.className = "ac-list";
    list.setAttribute("role", "listbox");
    list.dataset.for = madeFor;
    if (!choices.length) list.innerHTML = '<div class="ac-empty">No suggestions from the bot</div>';
    choices.forEach((ch, i) => {
      const item = document.createElement("div");
      item.className = `ac-choice${i === selected ? " selected" : ""}`;
      item.dataset.value = String(ch.value);
      item.textContent = ch.name;
      item.addEventListener("mousedown", (ev) => { ev.preventDefault(); pick(i); });
      list.appendChild(item);
    });
    field.appendChild(list);
  };
  const ask = async () => {
    const seq = ++c.acSeq;
    const asked = input.value;
    try {
      const { data } = await post("/api/autocomplete", {
        name: c.command.path, options: currentValues(), focused: opt.name, user: state.persona, channel_id: state.channelId,
      });
      if (seq !== c.acSeq || document.activeElement !== input || input.value !== asked) return;
      choices = data.choices || [];
      selected = -1;
      madeFor = asked;
      show();
    } catch { /* the notice says why */ }
  };
  input.addEventListener("focus", () => { clearTimeout(timer); timer = setTimeout(ask, 50); });
  input.addEventListener("input", () => { close(); clearTimeout(timer); timer = setTimeout(ask, 250); });
  input.addEventListener("blur", () => { clearTimeout(timer); setTimeout(close, 150); });
  input.addEventListener("keydown", (ev) => {
    if (!field.querySelector(".ac-list")) return;
    if (!fresh()) { close(); return; } // made for other text: never used
    if (ev.key === "Escape") {
      ev.preventDefault();
      close();
    } else if (!choices.length) {
      if (ev.key === "Enter") close(); // nothing to pick: Enter sends what was typed
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      selected = selected < 0 ? (ev.key === "ArrowDown" ? 0 : choices.length - 1)
        : (selected + (ev.key === "ArrowDown" ? 1 : -1) + choices.length) % choices.length;
      show();
    } else if (ev.key === "Tab" && !ev.shiftKey) {
      ev.preventDefault();
      pick(selected < 0 ? 0 : selected);
    } else if (ev.key === "Enter") {
      if (selected >= 0) { ev.preventDefault(); pick(selected); } else close(); // then the field sends what was typed
    }
  });
}

// Values as the emulator takes them: text, "123" for integers/numbers/ids, true/false.
function currentValues() {
  const values = {};
  for (const name of c.shown) {
    const opt = c.command.options.find((o) => o.name === name);
    const input = optionInput(name);
    if (!opt || !input || opt.type === T.ATTACHMENT) continue;
    const raw = input.value;
    if (raw === "") continue;
    values[name] = opt.type === T.BOOLEAN ? raw === "true" : raw;
  }
  return values;
}

function validate() {
  const problems = [];
  document.querySelectorAll("#command-options .option").forEach((f) => f.classList.remove("invalid"));
  for (const name of c.shown) {
    const opt = c.command.options.find((o) => o.name === name);
    const input = optionInput(name);
    if (!opt || !input) continue;
    const empty = opt.type === T.ATTACHMENT ? !input.files?.length : input.value === "";
    let problem = null;
    if (empty) problem = opt.required ? `${name} is required` : null;
    else if (opt.type === T.INTEGER && !/^-?\d+$/.test(input.value.trim())) problem = `${name} must be a whole number`;
    else if (opt.type === T.NUMBER && !Number.isFinite(Number(input.value))) problem = `${name} must be a number`;
    else if ((opt.type === T.INTEGER || opt.type === T.NUMBER) && ((opt.min_value !== undefined && Number(input.value) < opt.min_value) || (opt.max_value !== undefined && Number(input.value) > opt.max_value))) {
      problem = `${name} must be between ${opt.min_value ?? "−∞"} and ${opt.max_value ?? "∞"}`;
    } else if (opt.type === T.STRING && opt.min_length && input.value.length < opt.min_length) problem = `${name} needs at least ${opt.min_length} characters`;
    if (problem) {
      problems.push(problem);
      input.closest(".option").classList.add("invalid");
    }
  }
  $("#command-error").textContent = problems.join(" · ");
  return !problems.length;
}

// ---------------------------------------------------------------------------------------------
async function submit() {
  if (c.command) return submitCommand();
  const input = $("#composer-input");
  const text = input.value;
  if (text.startsWith("/") && c.suggestions.length) { chooseCommand(c.suggestions[c.selected]); return; }
  if (!text.trim() && !c.files.length) return;
  const files = c.files.map((f) => ["files", f]);
  const body = { content: text, user: state.persona, channel_id: state.channelId, reply_to: state.replyTo };
  input.value = "";
  autoGrow(input);
  const sent = c.files;
  c.files = [];
  renderFiles();
  setReply(null);
  try {
    await post("/api/message", body, files);
    c.onSent();
  } catch {
    input.value = text;
    c.files = sent;
    renderFiles();
  }
}

async function submitCommand() {
  if (!validate()) return;
  const cmd = c.command;
  const files = [];
  for (const name of c.shown) {
    const opt = cmd.options.find((o) => o.name === name);
    const input = optionInput(name);
    if (opt?.type === T.ATTACHMENT && input?.files?.length) files.push([`option:${name}`, input.files[0]]);
  }
  const body = { name: cmd.path, options: currentValues(), user: state.persona, channel_id: state.channelId };
  const button = $("#send-button");
  button.disabled = true;
  try {
    await post("/api/command", body, files);
    cancelCommand(true);
    c.onSent();
  } catch {
    /* the notice explains; the form stays for a fix */
  } finally {
    button.disabled = false;
  }
}

export function prepareCommand(path) {
  const cmd = visibleCommands(1).find((x) => x.path === path);
  if (!cmd) return false;
  cancelCommand(false);
  $("#composer-input").value = `/${path}`;
  chooseCommand(cmd);
  return true;
}

