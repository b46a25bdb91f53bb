-- Relay keys: the identity posts appear under, how the key's channels were chosen, and an optional expiry.
--   avatar_url             https URL of the avatar posts appear with (NULL = the webhook's default)
--   custom_identity        1 = a post may set its own username/avatar_url; 0 = it always appears under
--                          the key's name and avatar (a post that sets them gets 400)
--   channels_from_creator  1 = channel_ids are the channels the creator could post in when the key was
--                          made (no channel list was given); 0 = the list the admin gave
--                          (an empty list is only found on keys made before this migration: any channel)
--   expires_at             unix time after which the key gets 401 key_expired (NULL = never)
-- Keys made before this migration keep their channels and get no custom identity.
ALTER TABLE relay_keys ADD COLUMN avatar_url TEXT;
ALTER TABLE relay_keys ADD COLUMN custom_identity INTEGER NOT NULL DEFAULT 0 CHECK (custom_identity IN (0, 1));
ALTER TABLE relay_keys ADD COLUMN channels_from_creator INTEGER NOT NULL DEFAULT 0
    CHECK (channels_from_creator IN (0, 1));
ALTER TABLE relay_keys ADD COLUMN expires_at INTEGER;
