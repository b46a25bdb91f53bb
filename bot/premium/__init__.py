"""Premium tiers over Discord entitlements (``[premium]``): which tier applies to a guild or member, the
entitlements as last seen, consumables granted once, and the upkeep that keeps them right."""
