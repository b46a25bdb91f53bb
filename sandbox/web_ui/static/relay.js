// The relay panel: create a key with /relay key create (shown once, ephemerally), then POST a JSON
// payload to the bot's /send-data (through the sandbox server) and watch it arrive in the channel.
import { post } from "./api.js";
import { prepareCommand } from "./composer.js";
import { notify } from "./notices.js";
import { state, me, channel, isVisible, visibleCommands } from "./state.js";

const $ = (sel) => document.querySelector(sel);
const KEY_RE = /gcr_[A-Za-z0-9]+_[A-Za-z0-9_-]{16,}/;
let edited = false;

function example() {
  return JSON.stringify({
    channelId: state.channelId,
    content: "Hello from the relay 👋",
    embeds: [{
      title: "Deploy finished",
      description: "**gatecord** v0.1.0 is live.",
      color: 5763719,
      fields: [{ name: "Duration", value: "42 s", inline: true }, { name: "Status", value: "green", inline: true }],
      footer: { text: "CI" },
    }],
  }, null, 2);
}

// The newest relay key in a message only the current member can see (the reply to /relay key create).
function keyFromReply() {
  const mine = me();
  let found = null;
  for (const m of state.messages.values()) {
    if (!m.ephemeral || m.visible_to !== mine?.id || !isVisible(m)) continue;
    const hit = (m.content || "").match(KEY_RE);
    if (hit && (!found || BigInt(m.id) > BigInt(found.id))) found = { id: m.id, key: hit[0] };
  }
  return found?.key ?? null;
}

export function refreshRelay() {
  const url = state.info?.relay_url;
  $("#relay-curl").textContent = url ? `From a shell: curl -X POST ${url}/send-data -H "Authorization: Bearer <key>" -H "Content-Type: application/json" -d @payload.json` : "";
  const key = keyFromReply();
  $("#relay-use-key").hidden = !key || $("#relay-key").value === key;
  if (!edited) $("#relay-body").value = example();
  const canCreate = visibleCommands(1).some((x) => x.path === "relay key create");
  $("#relay-prepare").disabled = !canCreate;
  $("#relay-prepare").title = canCreate ? "" : "Only members with Manage Server see /relay: switch to the admin";
}

export function initRelay() {
  const panel = $("#relay-panel");
  const toggle = $("#relay-toggle");
  const setOpen = (open) => { panel.hidden = !open; toggle.classList.toggle("active", open); if (open) refreshRelay(); };
  toggle.addEventListener("click", () => setOpen(panel.hidden));
  $("#relay-close").addEventListener("click", () => setOpen(false));
  $("#relay-body").addEventListener("input", () => { edited = true; });
  $("#relay-example").addEventListener("click", () => { edited = false; refreshRelay(); });
  $("#relay-prepare").addEventListener("click", () => {
    if (!prepareCommand("relay key create")) notify("/relay key create is for admins: switch to the admin first.", "error");
  });
  $("#relay-use-key").addEventListener("click", () => { $("#relay-key").value = keyFromReply() || ""; refreshRelay(); });
  $("#relay-send").addEventListener("click", send);
}

async function send() {
  const result = $("#relay-result");
  const button = $("#relay-send");
  button.disabled = true;
  result.className = "small";
  result.textContent = "Sending…";
  try {
    const { data } = await post("/api/relay", { key: $("#relay-key").value, body: $("#relay-body").value });
    const ok = data.status >= 200 && data.status < 300;
    result.className = `small ${ok ? "ok" : "bad"}`;
    result.dataset.status = String(data.status);
    const body = typeof data.body === "string" ? data.body : JSON.stringify(data.body, null, 2);
    result.textContent = `HTTP ${data.status}\n${body}`;
    if (ok) {
      let target = null;
      try { const parsed = JSON.parse($("#relay-body").value); target = parsed.channelId || parsed.channel_id; } catch { /* shown above */ }
      if (target && channel(String(target)) && String(target) !== state.channelId) {
        notify(`Queued for #${channel(String(target)).name}`, "info", 4000);
      }
    }
  } catch (err) {
    result.className = "small bad";
    result.textContent = String(err.message || err);
  } finally {
    button.disabled = false;
  }
}
