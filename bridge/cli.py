"""The `printbridge` command (README, Command line). Machine-readable output is one JSON document on stdout; messages
for people go to stderr."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from bridge import __version__
from bridge.config import ConfigError, Settings, add_serve_flags, load_settings
from bridge.dialects.registry import DEFAULT_DIALECT
from bridge.domain.views import encode_printer
from bridge.mqtt.dynsec import BRIDGE_ACCOUNT, HA_ACCOUNT
from bridge.printer_service import PrinterService

_encoder = msgspec.json.Encoder()


def _out(data: Any) -> None:
    sys.stdout.write(_encoder.encode(data).decode() + "\n")
    sys.stdout.flush()


def _err(message: str) -> None:
    print(f"printbridge: {message}", file=sys.stderr)


def _store(settings: Settings, *, printers: bool = True) -> Any:
    """The store, with every printer loaded unless the command needs only the users (`serve`)."""
    from bridge.state.store import Store

    store = Store(settings.db_path)
    if printers:
        store.load()
    return store


# -- commands --------------------------------------------------------------------------------------------


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.state.users import UserExists

    store = _store(settings)
    try:
        user_id, token = store.users.add(args.name)
    except UserExists:
        _err(f"user {args.name!r} exists already")
        return 1
    _out({"id": user_id, "username": args.name, "token": token})
    return 0


def cmd_user_token(settings: Settings, args: argparse.Namespace) -> int:
    token = _store(settings).users.rotate_token(args.name)
    if token is None:
        _err(f"no user {args.name!r}")
        return 1
    _out({"username": args.name, "token": token})
    return 0


def _printer_doc(store: Any, rec: Any) -> dict[str, Any]:
    return msgspec.json.decode(encode_printer(rec))


def _accounts_now(settings: Settings, store: Any) -> Any:
    """Account changes made on the broker before the command returns (when the broker answers)."""
    from bridge.accounts import AccountsNow
    from bridge.mqtt.topics import Topics

    return AccountsNow(settings.mqtt_url, store, Topics(settings.base_topic, settings.ha_prefix), settings.mqtt_ca)


def _left_to_serve(what: str) -> None:
    _err(f"the broker did not answer: a running `printbridge serve` {what} (otherwise its next start does)")


def cmd_printer_add(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.domain.agent_config import build_agent_config
    from bridge.http.validation import InvalidInput, parse_printer_body
    from bridge.mqtt.dynsec import printer_username

    store = _store(settings)
    owner = store.users.id_of(args.owner)
    if owner is None:
        _err(f"no user {args.owner!r} (create it with: printbridge user add {args.owner})")
        return 1
    body: dict[str, object] = {"name": args.name, "dialect": args.dialect}
    try:
        bambu = _bambu_settings(args)
    except ValueError as exc:
        _err(str(exc))
        return 2
    if bambu is not None:
        body["bambu"] = bambu
    try:
        fields = parse_printer_body(_encoder.encode(body), require_name=True)
    except InvalidInput as exc:
        _err(str(exc))
        return 2
    rec = asyncio.run(PrinterService(store).create(owner, fields))
    on_broker = _accounts_now(settings, store).printer_created(rec)
    doc = _printer_doc(store, rec)
    username = printer_username(rec.id)
    config = build_agent_config(
        rec, username=username, broker_url=settings.agent_mqtt_url, base_topic=settings.base_topic
    )
    if bambu is not None:  # the bridge connects to the printer: it has no account on the bridge's broker
        doc["bambu"] = {k: v for k, v in rec.dialect_config.items() if k in ("host", "serial", "port")}
        doc["agent_config"] = config
        _out(doc)
        _err("a running `printbridge serve` connects to this printer within a few seconds")
        return 0
    doc["mqtt"] = {"username": username, "password": rec.auth_token, "base_topic": settings.base_topic}
    doc["agent_config"] = config
    _out(doc)
    if not on_broker:
        _left_to_serve("creates this printer's broker account")
    return 0


_BAMBU_FLAGS = {"host": "--host", "serial": "--serial", "access_code": "--access-code", "port": "--port", "ca": "--ca"}


def _bambu_settings(args: argparse.Namespace) -> dict[str, object] | None:
    """The `bambu` object from `printer add --dialect bambu --host … --serial … --access-code … [--port]
    [--ca FILE]`; `--access-code -` reads the code from stdin (so that it is not seen in the process list)."""
    given = {key: getattr(args, key) for key in _BAMBU_FLAGS if getattr(args, key) is not None}
    if args.dialect != "bambu":
        if given:
            raise ValueError(f"{_BAMBU_FLAGS[next(iter(given))]}: only for --dialect bambu")
        return None
    if given.get("access_code") == "-":
        given["access_code"] = sys.stdin.readline().strip()
    if "ca" in given:
        try:
            given["ca"] = Path(str(given["ca"])).read_text()
        except OSError as exc:
            raise ValueError(f"--ca: cannot read it: {exc.strerror or exc}") from None
    return given


def cmd_printer_list(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    records = list(store.printers.values())
    if args.owner is not None:
        owner = store.users.id_of(args.owner)
        if owner is None:
            _err(f"no user {args.owner!r}")
            return 1
        records = [r for r in records if r.owner_id == owner]
    store.printers.mark_stale(time.time() - settings.status_ttl_s)
    sys.stdout.write("[" + ",".join(encode_printer(r).decode() for r in records) + "]\n")
    return 0


def cmd_printer_token(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    rec = store.printers.get(args.id)
    if rec is None:
        _err(f"no printer {args.id}")
        return 1
    token = asyncio.run(PrinterService(store).rotate_token(rec))
    on_broker = rec.archived_at is not None or _accounts_now(settings, store).token_rotated(rec)
    _out({"id": rec.id, "auth_token": token})
    if not on_broker:
        _left_to_serve("gives this printer's broker account the new password")
    return 0


def cmd_ha_account(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    account = store.accounts.get(HA_ACCOUNT)
    if account is None:
        account = (HA_ACCOUNT, secrets.token_urlsafe(24))
        store.accounts.set(HA_ACCOUNT, *account)
    on_broker = _accounts_now(settings, store).ha_account()
    _out({"username": account[0], "password": account[1]})
    if not on_broker:
        _left_to_serve("adds this account to the broker")
    return 0


def cmd_broker_init(settings: Settings, args: argparse.Namespace) -> int:
    """Prepare the broker's dynamic-security file with the bridge as its admin (once)."""
    from bridge.mqtt.dynsec import build_initial_config

    store = _store(settings)
    path = Path(args.dynsec_file)
    account = store.accounts.get(BRIDGE_ACCOUNT)
    created = False
    if not path.exists():
        if account is None:
            account = ("printbridge", secrets.token_urlsafe(24))
            store.accounts.set(BRIDGE_ACCOUNT, *account)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(build_initial_config(*account))
        os.chmod(tmp, 0o600)
        tmp.replace(path)
        created = True
    elif account is None:
        _err(
            f"{path} exists but {settings.db_path} has no bridge account: remove {path} (the broker's accounts) "
            "or point PRINTBRIDGE_MQTT_URL at the broker with credentials"
        )
        return 1
    _out({"username": account[0], "dynsec_file": str(path), "created": created})
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from bridge.app import create_app
    from bridge.serving import BridgeServer

    # Only the users: the bridge loads the printers itself. Loading them here too cost 10,000 printers'
    # start-up ~0.15 s, and their records outlived `del store` (the store's parts refer to one another) to
    # slow the bridge's own load by ~0.05 s more (bench/startup.py).
    store = _store(settings, printers=False)
    if store.users.count() == 0:
        user_id, token = store.users.add("admin")
        _out({"id": user_id, "username": "admin", "token": token})
        _err(f"created user 'admin'; its API token (shown once): {token}")
    store.close()
    if settings.require_broker_auth:
        from bridge.mqtt.brokercheck import anonymous_can_publish
        from bridge.mqtt.topics import Topics

        topics = Topics(settings.base_topic, settings.ha_prefix)
        verdict = anonymous_can_publish(settings.mqtt_url, topics.anonymous_probe, ca_file=settings.mqtt_ca)
        if verdict is None:
            _err("PRINTBRIDGE_REQUIRE_BROKER_AUTH: cannot reach the broker to check it; not starting")
            return 2
        if verdict:
            _err(
                f"PRINTBRIDGE_REQUIRE_BROKER_AUTH: the broker lets anonymous clients publish to "
                f"{topics.everything}; not starting"
            )
            return 2
    app = create_app(settings)
    _err(f"serving http://{settings.http_host}:{settings.http_port} (broker {settings.mqtt_url.redacted()})")
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=4,
    )
    # uvicorn re-raises the stop signal once it has shut down gracefully; that stop is a clean exit (0).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    BridgeServer(config, app.state.bridge, app.state.hub).run()
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.agent.simulator import Simulator, SimulatorConfig, SimulatorError
    from bridge.config import MqttUrl

    try:
        url = MqttUrl.parse(args.mqtt_url) if args.mqtt_url else settings.mqtt_url
    except ValueError as exc:
        _err(f"--mqtt-url: {exc}")
        return 2
    config = SimulatorConfig(
        printer_id=args.printer,
        password=args.password,
        host=url.host,
        port=url.port,
        tls=url.tls,
        ca=str(settings.mqtt_ca) if url.tls and settings.mqtt_ca else None,
        base_topic=settings.base_topic,
        print_duration_s=args.print_duration,
        status_interval_s=args.status_interval,
    )
    try:
        Simulator(config).run_forever()
    except SimulatorError as exc:
        _err(f"simulate: {exc}")
        return 1
    return 0


# -- parsing ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="printbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"printbridge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP API and the MQTT bridge")
    add_serve_flags(serve)
    serve.set_defaults(func=cmd_serve)

    user = sub.add_parser("user", help="API users").add_subparsers(dest="user_command", required=True)
    p = user.add_parser("add", help="create a user and print its API token")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("token", help="give a user a new API token (the old one stops working)")
    p.add_argument("name")
    p.set_defaults(func=cmd_user_token)

    printer = sub.add_parser("printer", help="printers").add_subparsers(dest="printer_command", required=True)
    p = printer.add_parser("add", help="create a printer and print its MQTT credentials")
    p.add_argument("--owner", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--dialect", default=DEFAULT_DIALECT, help=f"the protocol it speaks (default {DEFAULT_DIALECT})")
    p.add_argument("--host", help="bambu: the printer's IP address or host name")
    p.add_argument("--serial", help="bambu: the printer's serial number")
    p.add_argument("--access-code", dest="access_code", help="bambu: the LAN access code ('-' reads it from stdin)")
    p.add_argument("--port", type=int, help="bambu: the printer's MQTT port (default 8883)")
    p.add_argument("--ca", help="bambu: a CA file (PEM) to verify the printer's certificate against")
    p.set_defaults(func=cmd_printer_add)
    p = printer.add_parser("list", help="list printers")
    p.add_argument("--owner")
    p.set_defaults(func=cmd_printer_list)
    p = printer.add_parser("token", help="give a printer a new auth token (its MQTT password)")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_printer_token)

    p = sub.add_parser("ha-account", help="print the Home Assistant broker account, creating it if missing")
    p.set_defaults(func=cmd_ha_account)

    p = sub.add_parser("broker-init", help="write the broker's dynamic-security file with the bridge as admin")
    p.add_argument("--dynsec-file", default="data/mosquitto/dynamic-security.json")
    p.set_defaults(func=cmd_broker_init)

    p = sub.add_parser("simulate", help="run a simulated printer agent")
    p.add_argument("--printer", type=int, required=True)
    p.add_argument("--password", required=True, help="the printer's auth_token")
    p.add_argument("--mqtt-url")
    p.add_argument("--print-duration", type=float, default=600.0, help="seconds per fake print")
    p.add_argument("--status-interval", type=float, default=2.0, help="seconds between status messages")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    flags = {k: v for k, v in vars(args).items() if isinstance(v, str)} if args.command == "serve" else {}
    try:
        settings = load_settings(flags=flags)
    except ConfigError as exc:
        _err(str(exc))
        return 2
    return int(args.func(settings, args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
