// The shop panel: the application's SKUs with "Buy" (a purchase in Discord's store: the bot gets
// ENTITLEMENT_CREATE), and the active entitlements with "End" (a subscription ends; a one-time purchase
// is refunded). A premium button in a message is drawn as Discord's shop button; clicking it buys too.
import { post } from "./api.js";
import { notify } from "./notices.js";
import { escapeHtml } from "./markdown.js";
import { state, guildOf } from "./state.js";

const $ = (sel) => document.querySelector(sel);

export function skuName(skuId) {
  return state.shop?.skus.find((s) => s.id === String(skuId))?.name ?? `SKU ${skuId}`;
}

// The current member buys an SKU where they are (a server SKU goes to the channel's server).
export async function buy(skuId) {
  const { data } = await post("/api/buy", { sku_id: String(skuId), user: state.persona, channel_id: state.channelId });
  notify(`Bought ${skuName(skuId)}`, "info", 4000);
  return data;
}

function owner(e) {
  if (e.guild_id) return `server ${e.guild_name || e.guild_id}${e.user_name ? ` (bought by ${e.user_name})` : ""}`;
  return e.user_name || e.user_id || "?";
}

export function refreshShop() {
  const shop = state.shop;
  if (!shop) return;
  const place = guildOf(state.channelId);
  const where = place && !place.dm ? place.name : null;
  $("#shop-skus").innerHTML = shop.skus.length ? shop.skus.map((s) => `
    <li class="sku" data-sku-id="${s.id}"><div><strong>${escapeHtml(s.name)}</strong>
      <span class="muted small">${escapeHtml(s.kind)} · for ${s.scope === "server" ? `the server${where ? ` (${escapeHtml(where)})` : ""}` : "you"}</span></div>
      <button type="button" class="primary" data-shop="buy" data-sku-id="${s.id}">Buy</button></li>`).join("")
    : '<li class="muted small">The application sells nothing (no SKU).</li>';
  $("#shop-entitlements").innerHTML = shop.entitlements.length ? shop.entitlements.map((e) => `
    <li class="entitlement" data-entitlement-id="${e.id}"><div><strong>${escapeHtml(e.sku_name)}</strong>
      <span class="muted small">${escapeHtml(owner(e))}</span></div>
      <button type="button" data-shop="end" data-entitlement-id="${e.id}" title="${e.kind === "subscription" ? "End the subscription now" : "Refund (delete the entitlement)"}">End</button></li>`).join("")
    : '<li class="muted small">No active entitlement.</li>';
}

export function initShop() {
  const panel = $("#shop-panel");
  const toggle = $("#shop-toggle");
  const setOpen = (open) => { panel.hidden = !open; toggle.classList.toggle("active", open); if (open) refreshShop(); };
  toggle.addEventListener("click", () => setOpen(panel.hidden));
  $("#shop-close").addEventListener("click", () => setOpen(false));
  panel.addEventListener("click", async (ev) => {
    const button = ev.target.closest("[data-shop]");
    if (!button) return;
    button.disabled = true;
    try {
      if (button.dataset.shop === "buy") await buy(button.dataset.skuId);
      else await post("/api/end-entitlement", { entitlement_id: button.dataset.entitlementId });
    } catch { /* the refusal is shown as a notice */ } finally {
      button.disabled = false;
    }
  });
}
