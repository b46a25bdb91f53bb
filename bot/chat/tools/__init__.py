"""Tools in chat: functions the model may call during an answer (issue 19).

``names`` (the setting's vocabulary, importable from anywhere), ``base`` (what a tool is and what it
gets), one module per function (``search_knowledge``, ``generate_image``, ``create_poll``,
``read_channel``, ``speak``), ``registry`` (which tools exist, which a channel and the gateway allow)
and ``loop`` (the rounds of calls inside one answer). Kept import-light: ``bot.guilds.config`` reads
``names``.
"""
