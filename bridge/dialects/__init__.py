"""Printer dialects: the protocols printbridge speaks with printers, behind one seam.

A dialect turns what a printer sends into a few normalised inputs (`bridge.domain.inputs`: a status
update with its print and event, availability, a snapshot, a detection frame, a command reply, a sign of
life) and turns a command into what the printer understands. Ingest (`bridge.ingest`), the actions
(`bridge.actions`) and the command layer (`bridge.commands`) consume only those inputs and know no dialect.

The table `bridge.dialects.registry.DIALECTS` maps a printer's `dialect` (a column of `printers`, chosen
when the printer is created, fixed afterwards) to the class that speaks it; an unknown name is an error
naming the known ones. `printbridge` (`bridge.dialects.printbridge`), the protocol of docs/mqtt.md, is
the default. To add a dialect: subclass `Dialect` (`bridge.dialects.base`), set `name`, override what the
protocol needs, and add the class to `DIALECTS`.

The interface (`bridge.dialects.base.Dialect`; every method has a default):

- One instance per dialect serves all its printers and may keep per-printer state (forget a printer in
  `printer_removed`). It receives a `DialectContext`: `topics` (the topic tree; a dialect's own topics live
  under its printer's space, `topics.printer(id, "moonraker/status")`), `publisher` (the bridge's broker
  connection: `publish` awaits the broker, `publish_nowait` queues; a dialect may publish requests that
  are not commands, e.g. a poll), `clock`, `command_timeout_s`, `deliver(printer_id, inputs)` (feed inputs
  into ingest, for a dialect that owns its transport), `printers()` (its live printers now),
  `save_config(printer_id, config)` (record what the dialect learned about a printer in its settings, e.g.
  a certificate pinned at first contact) and `reconnect_cap_s` (the longest wait between two attempts, for
  a dialect that owns its connections). `bambu` (`bridge.dialects.bambu`) is such a dialect: it connects
  out to each printer's own broker and gets no account on the bridge's.
- Life cycle: `start()` once after the printers are loaded (start periodic tasks, open connections),
  `stop()` once at shutdown, `connected()` whenever the bridge's broker connection comes (back) up, and
  `printer_added` / `printer_changed` / `printer_removed` when printers of the dialect are created,
  unarchived, changed (their settings too), deleted or archived, by the API or another process.
- The bridge's broker: `subscriptions()` (topic filters the bridge subscribes to for the dialect),
  `accepts(subtopic)` (what follows `B/printers/{id}/` that the dialect consumes; `action/...` is the
  bridge's), `decode(printer, subtopic, payload, retained)` -> inputs (validate completely, raise
  `PayloadError` for anything malformed: the message is dropped and logged; change nothing), and the
  classmethod `broker_permissions(topics, printer_id)` -> the `BrokerPermission`s of the printer's broker
  account (`publish`/`subscribe` on exact topics). An empty list means the printer gets no broker account (a
  dialect that reaches its printers over its own connection). `bridge.mqtt.dynsec` builds the role from it.
- Commands (`pause`, `resume`, `cancel` with `args`): `refuse(printer, cmd)` may refuse before sending,
  judged from the known state (recorded as `refused`, nothing sent). `send_command(printer, request)` hands
  a `CommandRequest` to the printer or raises `CommandNotSent` (outcome `not_sent`). The reply comes back
  as a `CommandReply` input carrying `request.cmd_id` (use it as the request id of the protocol; replies
  are matched by id and printer, so a shared response topic works). `confirmation(printer, cmd)` may return
  a `Confirmation`: the command then succeeds only when `met(printer)` holds after a later status update
  (or already does) within the command timeout, else it fails with `reason(printer)` (outcome `timeout`).
- Staleness: a status is served as `null` when nothing was heard for `PRINTBRIDGE_STATUS_TTL_S`; any
  `StatusUpdate` or a `SignOfLife` input (an answer to a poll) counts as hearing from the printer.
- Per-printer settings: `takes_config = True` and the classmethod `validate_config(value, current)`
  validate the object a REST body carries under the dialect's name (`{"name": ..., "dialect": "x",
  "x": {...}}` on POST; `{"x": {...}}` on PATCH, merged over `current` by the dialect) and return what is
  stored in the printer's `dialect_config` (JSON column), available as `printer.dialect_config`. Raise
  `DialectConfigError(key, message)`: the API answers 400 naming `x.key`. The Printer object does not
  show these settings (they may hold secrets); a body naming another dialect's object is a 400.
"""
