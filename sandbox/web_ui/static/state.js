// The page's whole state, shared by the modules. Ids are strings (snowflakes do not fit JS numbers).
export const state = {
  world: null,          // {bot, guilds, users, personas, default_channel_id}
  commands: [],         // flattened slash commands with options and visible_to
  messages: new Map(),  // id -> message view
  typing: {},           // channel id -> seconds left
  guildId: null,
  channelId: null,
  persona: localStorage.getItem("gatecord.persona") || "admin",
  unread: new Set(),
  dismissed: new Set(), // ephemeral messages the member dismissed
  replyTo: null,
  connected: false,
  shop: null,           // {skus, entitlements}: the app's store and the active entitlements
  info: {},             // /api/info: relay_url (the bot's web server), persistence (what is kept across runs)
};

export function me() {
  return state.world?.personas.find((p) => p.username === state.persona) ?? state.world?.personas[0];
}

export function guildOf(channelId) {
  return state.world?.guilds.find((g) => g.channels.some((c) => c.id === channelId));
}

export function channel(channelId) {
  for (const g of state.world?.guilds ?? []) {
    const c = g.channels.find((x) => x.id === channelId);
    if (c) return c;
  }
  return null;
}

export function visibleCommands(type = 1) {
  const mine = me();
  return state.commands.filter((c) => c.type === type && c.guild_id === state.guildId && mine && c.visible_to.includes(mine.id));
}

// Snowflake -> Date (Discord epoch 2015-01-01).
export function snowflakeDate(id) {
  try { return new Date(Number((BigInt(id) >> 22n) + 1420070400000n)); } catch { return new Date(); }
}

// Ephemeral messages are shown only to the member they are for (and not after "Dismiss").
export function isVisible(m) {
  if (state.dismissed.has(m.id)) return false;
  return !m.ephemeral || m.visible_to === me()?.id;
}
