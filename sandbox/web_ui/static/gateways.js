// The "Gateways" panel: the second emulated gateway a server can be given with /gateway set (what to
// type into the modal), and the newest requests each emulated gateway received: which one answered.
import { prepareCommand } from "./composer.js";
import { notify } from "./notices.js";
import { escapeHtml } from "./markdown.js";
import { state } from "./state.js";

const $ = (sel) => document.querySelector(sel);
let open = false;
let loading = false;
let again = false;  // asked for while a fetch was under way: fetch once more after it

function logView(gateway) {
  if (!gateway.recent) return '<li class="muted small">Its requests are not shown (your real gateway).</li>';
  if (!gateway.recent.length) return '<li class="muted small">No request yet.</li>';
  return gateway.recent.map((r) => `<li class="small"><code>${escapeHtml(r.method)} ${escapeHtml(r.path)}</code>
    <span class="${r.status && r.status < 400 ? "ok" : "bad"}">${r.status ?? "…"}</span>
    ${r.model ? `<span class="muted">${escapeHtml(r.model)}</span>` : ""}</li>`).join("");
}

// The panel's text from /api/info (state.info.own_gateway); hidden when the sandbox has none.
export function refreshGatewayOffer() {
  const own = state.info?.own_gateway;
  $("#gateways-toggle").hidden = !own;
  if (!own) return;
  $("#own-gateway").innerHTML = `Try <code>/gateway set</code> (as the admin) with: profile
    <code>${escapeHtml(own.profile)}</code>, base URL <code>${escapeHtml(own.base_url)}</code>, API key
    <code class="secret">${escapeHtml(own.api_key)}</code>${own.chat_model ? `, chat model <code>${escapeHtml(own.chat_model)}</code>` : ""}.`;
}

// The request logs (fetched while the panel is open).
export async function refreshGateways() {
  if (!open) return;
  if (loading) { again = true; return; }
  loading = true;
  again = false;
  try {
    const resp = await fetch("/api/gateways");
    if (!resp.ok) return;
    const data = await resp.json();
    $("#own-gateway-head").textContent = `Your server's own gateway (${data.own.profile}): ${data.own.requests} requests`;
    $("#own-gateway-log").innerHTML = logView(data.own);
    const op = data.operator;
    $("#operator-gateway-head").textContent = `The bot's gateway (${op.emulated ? "emulated " : ""}${op.profile})`
      + (op.emulated ? `: ${op.requests} requests` : "");
    $("#operator-gateway-log").innerHTML = logView(op);
  } catch { /* shown again on the next update */ } finally {
    loading = false;
    if (again) refreshGateways();
  }
}

export function initGateways() {
  const panel = $("#gateways-panel");
  const toggle = $("#gateways-toggle");
  const setOpen = (value) => {
    open = value; panel.hidden = !value; toggle.classList.toggle("active", value);
    if (value) { refreshGatewayOffer(); refreshGateways(); }
  };
  toggle.addEventListener("click", () => setOpen(panel.hidden));
  $("#gateways-close").addEventListener("click", () => setOpen(false));
  $("#gateways-prepare").addEventListener("click", () => {
    if (!prepareCommand("gateway set")) notify("/gateway set is for server managers: switch to the admin, in a server.", "error");
  });
}
