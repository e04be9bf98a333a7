"""Messages for Mosquitto 2.0's dynamic-security plugin: the initial JSON file and run-time commands.

Pure: every function builds values; nothing here talks to a broker or touches a file. The bridge
publishes `encode_request(...)` to `CONTROL_TOPIC` and reads the answer on `RESPONSE_TOPIC`.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from typing import Any

import msgspec

from bridge.mqtt.topics import Topics

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
CONTROL_FILTER = "$CONTROL/dynamic-security/#"

ADMIN_ROLE = "printbridge-admin"
DEFAULT_ITERATIONS = 101  # what mosquitto_ctrl and the plugin write in 2.0.11
SALT_BYTES = 12

# The acltype values the 2.0.11 plugin accepts.
PUBLISH_SEND = "publishClientSend"
PUBLISH_RECEIVE = "publishClientReceive"
SUBSCRIBE_LITERAL = "subscribeLiteral"
SUBSCRIBE_PATTERN = "subscribePattern"
UNSUBSCRIBE_PATTERN = "unsubscribePattern"


class CommandResult(msgspec.Struct, frozen=True):
    """One entry of the plugin's `{"responses": [...]}` answer."""

    command: str
    error: str | None = None
    data: dict[str, Any] | None = None
    correlation_data: str | None = msgspec.field(default=None, name="correlationData")

    @property
    def ok(self) -> bool:
        return self.error is None


class _Responses(msgspec.Struct):
    responses: list[CommandResult]


_RESPONSES_DECODER = msgspec.json.Decoder(_Responses)


# The broker accounts printbridge knows, by the name the store keeps their login under.
BRIDGE_ACCOUNT = "bridge"  # the bridge's own login (`printbridge broker-init`)
HA_ACCOUNT = "homeassistant"  # Home Assistant's (`printbridge ha-account`); also its default username


def synced_name(account: str) -> str:
    """Under this name the store keeps the login last given to the broker for `account`."""
    return account + ":synced"


def printer_username(printer_id: int) -> str:
    return f"printer-{printer_id}"


def printer_rolename(printer_id: int) -> str:
    return f"printer-{printer_id}"


def ha_rolename(username: str) -> str:
    return f"{username}-role"


def hash_password(password: str, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> dict[str, object]:
    """The `password`/`salt`/`iterations` fields of a client as the plugin stores them.

    PBKDF2-HMAC-SHA512, 64-byte key, 12-byte random salt, both base64-encoded.
    """
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {
        "password": base64.b64encode(key).decode("ascii"),
        "salt": base64.b64encode(salt).decode("ascii"),
        "iterations": iterations,
    }


def _acl(acltype: str, topic: str, allow: bool = True, priority: int = 0) -> dict[str, object]:
    return {"acltype": acltype, "topic": topic, "priority": priority, "allow": allow}


def build_admin_role_acls() -> list[dict[str, object]]:
    """Everything, including the `$CONTROL` topics that `#` does not match."""
    acls: list[dict[str, object]] = []
    for topic in ("#", CONTROL_FILTER, "$SYS/#"):
        acls.append(_acl(PUBLISH_SEND, topic))
        acls.append(_acl(PUBLISH_RECEIVE, topic))
        acls.append(_acl(SUBSCRIBE_PATTERN, topic))
        acls.append(_acl(UNSUBSCRIBE_PATTERN, topic))
    return acls


def build_initial_config(bridge_username: str, bridge_password: str) -> bytes:
    """The content of `dynamic-security.json`: deny by default, one admin client (the bridge)."""
    client: dict[str, object] = {
        "username": bridge_username,
        "textName": "printbridge",
        **hash_password(bridge_password),
        "roles": [{"rolename": ADMIN_ROLE}],
    }
    config = {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": True,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [client],
        "groups": [],
        "roles": [{"rolename": ADMIN_ROLE, "acls": build_admin_role_acls()}],
    }
    return msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n"


Permission = tuple[str, str]  # ("publish" | "subscribe", exact topic): bridge.dialects.base.BrokerPermission


def build_printer_role_acls(permissions: Sequence[Permission]) -> list[dict[str, object]]:
    """A printer's role from what its dialect says it may do: `("publish", topic)` allows publishing to
    exactly `topic`, `("subscribe", topic)` subscribing to exactly `topic` (docs/mqtt.md, "Accounts")."""
    kinds = {"publish": PUBLISH_SEND, "subscribe": SUBSCRIBE_LITERAL}
    return [_acl(kinds[kind], topic) for kind, topic in permissions]


def build_create_printer_commands(
    printer_id: int, password: str, permissions: Sequence[Permission]
) -> list[dict[str, object]]:
    rolename = printer_rolename(printer_id)
    return [
        {"command": "createRole", "rolename": rolename, "acls": build_printer_role_acls(permissions)},
        {
            "command": "createClient",
            "username": printer_username(printer_id),
            "password": password,
            "roles": [{"rolename": rolename}],
        },
    ]


def build_printer_account_commands(
    printer_id: int, password: str, permissions: Sequence[Permission], *, exists: bool
) -> list[dict[str, object]]:
    """Give `printer-{id}` this password: a new account, or (exists) a new password for the existing one."""
    username = printer_username(printer_id)
    if exists:
        return [
            build_set_password_command(username, password),
            # disable + enable disconnects an agent still connected with the old password
            build_disable_client_command(username),
            build_enable_client_command(username),
        ]
    # the set-password also covers an account left over from before ("already exists")
    return [
        *build_create_printer_commands(printer_id, password, permissions),
        build_set_password_command(username, password),
    ]


def build_delete_printer_commands(printer_id: int) -> list[dict[str, object]]:
    """Deleting the client also disconnects it if it is connected."""
    return [
        {"command": "deleteClient", "username": printer_username(printer_id)},
        {"command": "deleteRole", "rolename": printer_rolename(printer_id)},
    ]


def build_set_password_command(username: str, password: str) -> dict[str, object]:
    return {"command": "setClientPassword", "username": username, "password": password}


def build_disable_client_command(username: str) -> dict[str, object]:
    """The account stays but cannot connect; a connected client is disconnected."""
    return {"command": "disableClient", "username": username}


def build_enable_client_command(username: str) -> dict[str, object]:
    return {"command": "enableClient", "username": username}


def build_ha_role_acls(topics: Topics) -> list[dict[str, object]]:
    """docs/mqtt.md, Accounts: read `B/#` and `{ha_prefix}/#`, publish only actions and `{ha_prefix}/#`."""
    return [
        _acl(SUBSCRIBE_PATTERN, topics.everything),
        _acl(SUBSCRIBE_PATTERN, topics.ha_everything),
        _acl(PUBLISH_SEND, topics.action_filter()),
        _acl(PUBLISH_SEND, topics.ha_everything),
    ]


def build_ha_account_commands(username: str, password: str, topics: Topics) -> list[dict[str, object]]:
    rolename = ha_rolename(username)
    return [
        {"command": "createRole", "rolename": rolename, "acls": build_ha_role_acls(topics)},
        {
            "command": "createClient",
            "username": username,
            "password": password,
            "roles": [{"rolename": rolename}],
        },
    ]


def build_list_clients_command() -> dict[str, object]:
    return {"command": "listClients", "verbose": False, "count": -1, "offset": 0}


def encode_request(commands: list[dict[str, object]]) -> bytes:
    return msgspec.json.encode({"commands": commands})


def failures(results: list[CommandResult]) -> list[CommandResult]:
    """The answers that are real failures: a create of what exists already, or a delete of what is gone
    already, leaves the broker as it was asked to be."""
    return [
        r
        for r in results
        if r.error
        and "already exists" not in r.error.lower()
        and not (r.command in ("deleteClient", "deleteRole") and "not found" in r.error.lower())
    ]


def parse_response(payload: bytes) -> list[CommandResult]:
    """Decode the plugin's answer; raises `msgspec.ValidationError`/`DecodeError` on anything else."""
    return _RESPONSES_DECODER.decode(payload).responses
