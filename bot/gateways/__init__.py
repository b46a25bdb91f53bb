"""Which AI gateway serves a guild: the operator's, or the guild's own (bring your own key).

``directory.GatewayDirectory`` hands every service the client for a guild; ``store`` keeps the guilds'
own gateways with their keys encrypted (``secrets``); ``service`` checks, saves and removes them.
"""
