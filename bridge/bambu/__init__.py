"""Bambu Lab printers in LAN mode: each runs its own MQTT broker (TLS on 8883, user `bblp`, password = the
LAN access code) with reports on `device/{serial}/report` and requests on `device/{serial}/request`
(the community reference is OpenBambuAPI's mqtt.md and tls.md; Home Assistant's ha-bambulab shows a
long-lived client). The bridge connects out to each printer.

`report`, `protocol`, `pushall` and `setup` are pure; `trust` decides which certificate to accept;
`connection` owns the outbound connections.
"""
