"""Broker accounts (docs/mqtt.md) against a real Mosquitto 2.0 with dynamic security, driven as the bridge does."""

from __future__ import annotations

import base64

import pytest

from bridge.dialects.printbridge import printer_permissions
from bridge.mqtt.dynsec import (
    build_create_printer_commands,
    build_delete_printer_commands,
    build_ha_account_commands,
    build_list_clients_command,
    build_set_password_command,
    hash_password,
    printer_username,
)
from bridge.mqtt.topics import Topics
from tests.support.broker import (
    Broker,
    Probe,
    admin_probe,
    connected_probe,
    dynsec_call,
    dynsec_ok,
    requires_dynsec,
)

TOPICS = Topics(base="pbtest")
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code 135, in CONNACK, PUBACK and SUBACK
PW1, PW2, HA_USER, HA_PW = "printer-one-secret", "printer-two-secret", "homeassistant", "ha-secret"


@pytest.fixture
def accounts(dynsec_broker: Broker) -> Broker:
    """Printers 1 and 2 and the Home Assistant account, created at run time as the bridge does."""
    with admin_probe(dynsec_broker) as admin:
        dynsec_ok(admin, build_create_printer_commands(1, PW1, printer_permissions(TOPICS, 1)))
        dynsec_ok(admin, build_create_printer_commands(2, PW2, printer_permissions(TOPICS, 2)))
        dynsec_ok(admin, build_ha_account_commands(HA_USER, HA_PW, TOPICS))
    return dynsec_broker


def connect_rc(broker: Broker, username: str | None, password: str | None) -> int:
    probe = Probe(broker, username, password)
    try:
        return probe.connect()
    finally:
        probe.close()


def assert_nothing_before_sentinel(watcher: Probe, admin: Probe) -> None:
    """The admin's sentinel is published after the denied messages were refused: nothing else may arrive."""
    sentinel = TOPICS.printer(999, "sentinel")
    admin.publish(sentinel, b"end")
    assert watcher.collect_until(sentinel, b"end") == []


def test_hash_password_matches_mosquitto_ctrl() -> None:
    # Produced by `mosquitto_ctrl dynsec init file admin` (2.0.11) with password "secretpw".
    salt = base64.b64decode("9HlEd7/gDven13HA")
    assert hash_password("secretpw", salt) == {
        "password": "B1VZmnJha9ZxPawc9kpDgrIVv9Vpe/0aqRWOa9luL2dQE6GaCjROBHcnpLzZgvvs8HEF5gvGv/6rNjZewGOfjw==",
        "salt": "9HlEd7/gDven13HA",
        "iterations": 101,
    }


@requires_dynsec
def test_initial_config_admin_connects_and_manages_accounts(dynsec_broker: Broker) -> None:
    with admin_probe(dynsec_broker) as admin:
        [listed] = dynsec_call(admin, [build_list_clients_command()])
    assert listed.error is None
    assert listed.data is not None and listed.data["clients"] == [dynsec_broker.admin_username]


@requires_dynsec
def test_anonymous_and_wrong_password_are_refused(accounts: Broker) -> None:
    broker = accounts
    assert connect_rc(broker, None, None) != 0
    assert connect_rc(broker, printer_username(1), "wrong") != 0
    assert connect_rc(broker, printer_username(1), PW2) != 0
    assert connect_rc(broker, broker.admin_username, "wrong") != 0
    assert connect_rc(broker, printer_username(1), PW1) == 0


@requires_dynsec
def test_printer_publishes_its_own_inbound_topics(accounts: Broker) -> None:
    broker = accounts
    own = [
        TOPICS.status(1),
        TOPICS.availability(1),
        TOPICS.snapshot(1),
        TOPICS.detection(1),
        TOPICS.ack(1),
    ]
    with (
        connected_probe(broker) as watcher,
        connected_probe(broker, printer_username(1), PW1) as printer,
    ):
        assert watcher.subscribe(f"{TOPICS.base}/#") == [1]
        for topic in own:
            assert printer.publish(topic, b"x:" + topic.encode()) == 0
        sentinel = TOPICS.printer(999, "sentinel")
        watcher.publish(sentinel, b"end")
        seen = watcher.collect_until(sentinel, b"end")
    assert [(m.topic, m.payload) for m in seen] == [(t, b"x:" + t.encode()) for t in own]


@requires_dynsec
def test_printer_cannot_publish_elsewhere(accounts: Broker) -> None:
    broker = accounts
    forbidden = [
        TOPICS.status(2),
        TOPICS.ack(2),
        TOPICS.command(2),
        TOPICS.command(1),
        TOPICS.remote_status(1),
        TOPICS.state(1),
        TOPICS.action(1, "pause"),
        TOPICS.bridge_state,
        "homeassistant/status",
    ]
    with (
        connected_probe(broker) as admin,
        connected_probe(broker, printer_username(1), PW1) as printer,
    ):
        assert admin.subscribe("#") == [1]
        codes = [printer.publish(topic, b"forged") for topic in forbidden]
        assert codes == [NOT_AUTHORIZED] * len(forbidden)
        assert_nothing_before_sentinel(admin, admin)


@requires_dynsec
def test_printer_mqtt311_denied_publish_is_silently_dropped(accounts: Broker) -> None:
    broker = accounts
    with (
        connected_probe(broker) as admin,
        connected_probe(broker, printer_username(1), PW1, mqtt5=False) as printer,
    ):
        assert admin.subscribe("#") == [1]
        assert printer.publish(TOPICS.status(2), b"forged") == 0  # 3.1.1 has no reason code
        assert_nothing_before_sentinel(admin, admin)


@requires_dynsec
def test_printer_subscribes_only_to_its_own_command_and_remote_status(accounts: Broker) -> None:
    broker = accounts
    with (
        connected_probe(broker) as admin,
        connected_probe(broker, printer_username(1), PW1) as printer,
    ):
        assert printer.subscribe(TOPICS.command(2)) == [NOT_AUTHORIZED]
        assert printer.subscribe(TOPICS.remote_status(2)) == [NOT_AUTHORIZED]
        assert printer.subscribe(TOPICS.status(1)) == [NOT_AUTHORIZED]
        assert printer.subscribe(f"{TOPICS.base}/printers/+/command") == [NOT_AUTHORIZED]
        assert printer.subscribe(f"{TOPICS.base}/#") == [NOT_AUTHORIZED]
        assert printer.subscribe("#") == [NOT_AUTHORIZED]
        assert printer.subscribe(TOPICS.command(1)) == [1]
        assert printer.subscribe(TOPICS.remote_status(1)) == [1]

        admin.publish(TOPICS.command(2), b"for two")
        admin.publish(TOPICS.remote_status(1), b'{"should_watch": true}', retain=True)
        admin.publish(TOPICS.command(1), b"for one")
        first = printer.expect(lambda m: True)
        second = printer.expect(lambda m: True)
    assert (first.topic, first.payload) == (TOPICS.remote_status(1), b'{"should_watch": true}')
    assert (second.topic, second.payload) == (TOPICS.command(1), b"for one")
    assert printer.messages.empty()


@requires_dynsec
def test_home_assistant_account(accounts: Broker) -> None:
    broker = accounts
    with (
        connected_probe(broker) as admin,
        connected_probe(broker, HA_USER, HA_PW) as ha,
    ):
        assert admin.subscribe("#") == [1]
        assert ha.subscribe(f"{TOPICS.base}/#") == [1]
        assert ha.subscribe("homeassistant/#") == [1]
        assert ha.subscribe("other/#") == [NOT_AUTHORIZED]

        assert ha.publish(TOPICS.action(1, "pause"), b"PRESS") == 0
        assert ha.publish("homeassistant/status", b"online") == 0
        assert ha.publish(TOPICS.status(1), b"forged") == NOT_AUTHORIZED
        assert ha.publish(TOPICS.command(1), b"forged") == NOT_AUTHORIZED
        assert ha.publish(TOPICS.state(1), b"forged") == NOT_AUTHORIZED
        sentinel = TOPICS.printer(999, "sentinel")
        admin.publish(sentinel, b"end")
        seen = admin.collect_until(sentinel, b"end")
        ha_seen = ha.collect_until(sentinel, b"end")
    assert [(m.topic, m.payload) for m in seen] == [
        (TOPICS.action(1, "pause"), b"PRESS"),
        ("homeassistant/status", b"online"),
    ]
    # HA reads what it published on both trees (it is subscribed to them), and nothing forged.
    assert [(m.topic, m.payload) for m in ha_seen] == [
        (TOPICS.action(1, "pause"), b"PRESS"),
        ("homeassistant/status", b"online"),
    ]


@requires_dynsec
def test_deleting_a_printer_disconnects_it_and_refuses_reconnects(accounts: Broker) -> None:
    broker = accounts
    with connected_probe(broker, printer_username(1), PW1) as printer:
        with admin_probe(broker) as admin:
            dynsec_ok(admin, build_delete_printer_commands(1))
        assert printer.disconnected.wait(5), "the deleted printer's connection was not closed"
    assert connect_rc(broker, printer_username(1), PW1) == NOT_AUTHORIZED
    assert connect_rc(broker, printer_username(2), PW2) == 0


@requires_dynsec
def test_set_password_replaces_the_old_one(accounts: Broker) -> None:
    broker = accounts
    with admin_probe(broker) as admin:
        dynsec_ok(admin, [build_set_password_command(printer_username(1), "rotated")])
    assert connect_rc(broker, printer_username(1), PW1) == NOT_AUTHORIZED
    assert connect_rc(broker, printer_username(1), "rotated") == 0


@requires_dynsec
def test_creating_an_existing_printer_reports_an_error(accounts: Broker) -> None:
    with admin_probe(accounts) as admin:
        results = dynsec_call(admin, build_create_printer_commands(1, "other", printer_permissions(TOPICS, 1)))
    assert [r.command for r in results] == ["createRole", "createClient"]
    assert all(r.error for r in results)
    assert connect_rc(accounts, printer_username(1), PW1) == 0


@requires_dynsec
def test_accounts_and_retained_messages_survive_a_restart(accounts: Broker) -> None:
    broker = accounts
    with admin_probe(broker) as admin:
        dynsec_ok(admin, [build_set_password_command(printer_username(2), "after-rotation")])
        admin.publish(TOPICS.remote_status(1), b'{"should_watch": false}', retain=True)
    broker.restart()
    assert connect_rc(broker, printer_username(1), PW1) == 0
    assert connect_rc(broker, printer_username(2), PW2) == NOT_AUTHORIZED
    assert connect_rc(broker, printer_username(2), "after-rotation") == 0
    assert connect_rc(broker, HA_USER, HA_PW) == 0
    with connected_probe(broker, printer_username(1), PW1) as printer:
        assert printer.subscribe(TOPICS.remote_status(1)) == [1]
        retained = printer.expect(lambda m: m.topic == TOPICS.remote_status(1))
        assert printer.subscribe(TOPICS.command(2)) == [NOT_AUTHORIZED]
    assert (retained.payload, retained.retain) == (b'{"should_watch": false}', True)
