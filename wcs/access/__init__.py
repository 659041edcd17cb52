"""
Access control: who may connect, join, publish, play, chat, record and
download (docs/security.md, "Production setup").

- L{wcs.access.policy}: the one policy the core asks at each step;
- L{wcs.access.tokens}: signed tokens (JWT);
- L{wcs.access.hooks}: REST hooks to the application's backend;
- L{wcs.access.limits}: rate limits and bans;
- L{wcs.access.gate}: a session's messages kept in order while a check is out;
- L{wcs.access.records}: C{/records/} behind a key or signed links.

Each module declares its settings; C{wcs.tap} imports them all before it
reads the settings.
"""
