"""bridge/config.py (README): every PRINTBRIDGE_* variable, valid and invalid values, and the CLI's exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.config import ConfigError, MqttUrl, Settings, describe, load_settings, parse_bool

ROOT = Path(__file__).resolve().parents[2]


def load(**env: str) -> Settings:
    return load_settings(environ=env)


def refused(variable: str, value: str, **extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(**{variable: value, **extra})
    assert str(info.value).startswith(f"{variable}:"), str(info.value)
    return info.value


def test_defaults() -> None:
    s = load()
    assert s.db_path == Path("./data/printbridge.db")
    assert s.mqtt_url == MqttUrl(tls=False, host="127.0.0.1", port=1883, username=None, password=None)
    assert s.base_topic == "printbridge"
    assert (s.http_host, s.http_port) == ("127.0.0.1", 8000)
    assert s.command_timeout_s == 5.0
    assert s.status_ttl_s == 120.0
    assert s.ha_discovery is True
    assert s.ha_prefix == "homeassistant"
    assert s.ha_discovery_mode == "device"
    assert s.require_broker_auth is False
    assert s.mqtt_protocol in ("3.1.1", "5")
    assert s.mqtt_ca is None


def test_describe_lists_every_variable_of_the_spec() -> None:
    assert [row[0] for row in describe()] == [
        "PRINTBRIDGE_DB",
        "PRINTBRIDGE_MQTT_URL",
        "PRINTBRIDGE_MQTT_CA",
        "PRINTBRIDGE_BASE_TOPIC",
        "PRINTBRIDGE_HTTP_HOST",
        "PRINTBRIDGE_HTTP_PORT",
        "PRINTBRIDGE_COMMAND_TIMEOUT_S",
        "PRINTBRIDGE_STATUS_TTL_S",
        "PRINTBRIDGE_HA_DISCOVERY",
        "PRINTBRIDGE_HA_PREFIX",
        "PRINTBRIDGE_HA_DISCOVERY_MODE",
        "PRINTBRIDGE_REQUIRE_BROKER_AUTH",
        "PRINTBRIDGE_MQTT_PROTOCOL",
        "PRINTBRIDGE_PUBLIC_MQTT_URL",
    ]


# -- each variable ------------------------------------------------------------------------------------------


def test_db(tmp_path: Path) -> None:
    assert load(PRINTBRIDGE_DB=str(tmp_path / "x.db")).db_path == tmp_path / "x.db"
    assert load(PRINTBRIDGE_DB="relative/p.db").db_path == Path("relative/p.db")
    refused("PRINTBRIDGE_DB", "")
    refused("PRINTBRIDGE_DB", "   ")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", MqttUrl(False, "127.0.0.1", 1883, None, None)),
        ("mqtt://broker.lan", MqttUrl(False, "broker.lan", 1883, None, None)),
        ("mqtt://broker.lan/", MqttUrl(False, "broker.lan", 1883, None, None)),
        ("mqtts://broker.lan", MqttUrl(True, "broker.lan", 8883, None, None)),
        ("mqtts://broker.lan:9883", MqttUrl(True, "broker.lan", 9883, None, None)),
        ("mqtt://bridge:s3cret@10.0.0.2:1884", MqttUrl(False, "10.0.0.2", 1884, "bridge", "s3cret")),
        ("mqtts://bridge:s3cret@broker.lan", MqttUrl(True, "broker.lan", 8883, "bridge", "s3cret")),
        ("mqtt://bridge@broker.lan", MqttUrl(False, "broker.lan", 1883, "bridge", None)),
        ("mqtt://us%40er:p%3Ass%2Fw%40rd@h:1", MqttUrl(False, "h", 1, "us@er", "p:ss/w@rd")),
        ("mqtt://[::1]:1883", MqttUrl(False, "::1", 1883, None, None)),
    ],
)
def test_mqtt_url_forms(url: str, expected: MqttUrl) -> None:
    assert load(PRINTBRIDGE_MQTT_URL=url).mqtt_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "127.0.0.1:1883",
        "http://broker:1883",
        "tcp://broker:1883",
        "ws://broker",
        "mqtt://",
        "mqtt://:1883",
        "mqtt://broker:notaport",
        "mqtt://broker:70000",
        "mqtt://broker/topic",
        "mqtt://broker?x=1",
        "mqtt://broker#frag",
        "mqtt://[::1",
    ],
)
def test_mqtt_url_invalid(url: str) -> None:
    refused("PRINTBRIDGE_MQTT_URL", url)


def test_mqtt_url_error_does_not_echo_the_password() -> None:
    for url in ("mqtt://bridge:hunter2-secret@broker:99999", "mqtts://bridge:hunter2@-secret@broker/x"):
        err = refused("PRINTBRIDGE_MQTT_URL", url)
        assert "hunter2" not in str(err) and "secret" not in str(err), str(err)
        assert "bridge:***@broker" in str(err)


def test_mqtt_url_redacted() -> None:
    assert load(PRINTBRIDGE_MQTT_URL="mqtts://u:pw@h:1").mqtt_url.redacted() == "mqtts://u:***@h:1"
    assert load(PRINTBRIDGE_MQTT_URL="mqtt://h").mqtt_url.redacted() == "mqtt://h:1883"


def test_base_topic() -> None:
    assert load(PRINTBRIDGE_BASE_TOPIC="site/printers").base_topic == "site/printers"
    assert load(PRINTBRIDGE_BASE_TOPIC="pb").base_topic == "pb"
    for bad in ("", "/pb", "pb/", "a//b", "pb/#", "pb/+", "#", "+", "$SYS", "a\x00b"):
        refused("PRINTBRIDGE_BASE_TOPIC", bad)


def test_http_host_and_port() -> None:
    assert load(PRINTBRIDGE_HTTP_HOST="0.0.0.0").http_host == "0.0.0.0"
    assert load(PRINTBRIDGE_HTTP_HOST="::").http_host == "::"
    refused("PRINTBRIDGE_HTTP_HOST", "")
    refused("PRINTBRIDGE_HTTP_HOST", "  ")
    for good in ("0", "80", "8000", "65535"):
        assert load(PRINTBRIDGE_HTTP_PORT=good).http_port == int(good)
    for bad in ("", "abc", "-1", "65536", "80.5", "1e3", "8000x"):
        refused("PRINTBRIDGE_HTTP_PORT", bad)


@pytest.mark.parametrize(
    ("variable", "attr"),
    [
        ("PRINTBRIDGE_COMMAND_TIMEOUT_S", "command_timeout_s"),
        ("PRINTBRIDGE_STATUS_TTL_S", "status_ttl_s"),
    ],
)
def test_positive_durations(variable: str, attr: str) -> None:
    for good, expected in (("5", 5.0), ("0.25", 0.25), ("120", 120.0), ("1e3", 1000.0)):
        assert getattr(load(**{variable: good}), attr) == expected
    for bad in ("", "0", "-1", "-0.5", "nan", "inf", "-inf", "five", "5s"):
        refused(variable, bad)


BOOL_TRUE = ["true", "TRUE", "True", "tRuE", "1", "yes", "YES", "Yes"]
BOOL_FALSE = ["false", "FALSE", "False", "fAlSe", "0", "no", "NO", "No"]
BOOL_BAD = ["", "2", "on", "off", "t", "f", "y", "n", "enabled", "none"]


@pytest.mark.parametrize(
    ("variable", "attr"),
    [
        ("PRINTBRIDGE_HA_DISCOVERY", "ha_discovery"),
        ("PRINTBRIDGE_REQUIRE_BROKER_AUTH", "require_broker_auth"),
    ],
)
def test_booleans(variable: str, attr: str) -> None:
    for text in BOOL_TRUE:
        assert getattr(load(**{variable: text}), attr) is True, text
    for text in BOOL_FALSE:
        assert getattr(load(**{variable: text}), attr) is False, text
    for text in BOOL_BAD:
        refused(variable, text)


def test_parse_bool() -> None:
    for text in BOOL_TRUE:
        assert parse_bool(text) is True
    for text in BOOL_FALSE:
        assert parse_bool(text) is False
    for text in BOOL_BAD:
        with pytest.raises(ValueError):
            parse_bool(text)


def test_ha_prefix() -> None:
    assert load(PRINTBRIDGE_HA_PREFIX="ha").ha_prefix == "ha"
    for bad in ("", "ha/#", "/ha", "+"):
        refused("PRINTBRIDGE_HA_PREFIX", bad)


def test_ha_prefix_equal_to_base_topic_is_refused() -> None:
    err = refused("PRINTBRIDGE_HA_PREFIX", "printbridge")
    assert "PRINTBRIDGE_BASE_TOPIC" in str(err)
    refused("PRINTBRIDGE_HA_PREFIX", "site", PRINTBRIDGE_BASE_TOPIC="site")
    with pytest.raises(ConfigError, match=r"^PRINTBRIDGE_HA_PREFIX"):
        load(PRINTBRIDGE_BASE_TOPIC="homeassistant")
    # Different values are fine.
    s = load(PRINTBRIDGE_HA_PREFIX="printbridge", PRINTBRIDGE_BASE_TOPIC="pb")
    assert (s.ha_prefix, s.base_topic) == ("printbridge", "pb")


def test_ha_discovery_mode() -> None:
    assert load(PRINTBRIDGE_HA_DISCOVERY_MODE="device").ha_discovery_mode == "device"
    assert load(PRINTBRIDGE_HA_DISCOVERY_MODE="entity").ha_discovery_mode == "entity"
    for bad in ("", "Device", "entities", "both"):
        refused("PRINTBRIDGE_HA_DISCOVERY_MODE", bad)


def test_mqtt_protocol() -> None:
    assert load(PRINTBRIDGE_MQTT_PROTOCOL="3.1.1").mqtt_protocol == "3.1.1"
    assert load(PRINTBRIDGE_MQTT_PROTOCOL="5").mqtt_protocol == "5"
    for bad in ("", "3", "3.1", "5.0", "v5", "mqttv5"):
        refused("PRINTBRIDGE_MQTT_PROTOCOL", bad)


def test_mqtt_ca(tmp_path: Path) -> None:
    from tests.support.tls import make_ca

    ca = make_ca("config").write(tmp_path)
    s = load(PRINTBRIDGE_MQTT_URL="mqtts://broker.lan", PRINTBRIDGE_MQTT_CA=str(ca))
    assert s.mqtt_ca == ca
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    broken = tmp_path / "broken.pem"
    broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    for bad, reason in (
        ("", "expected the path"),
        (str(tmp_path / "missing.pem"), "cannot read it"),
        (str(not_pem), "expected PEM text"),
        (str(broken), "not a usable PEM certificate"),
    ):
        error = refused("PRINTBRIDGE_MQTT_CA", bad, PRINTBRIDGE_MQTT_URL="mqtts://broker.lan")
        assert reason in str(error), error
    # A CA with a plain mqtt:// broker would promise TLS that does not happen.
    with pytest.raises(ConfigError, match=r"^PRINTBRIDGE_MQTT_CA: only used with an mqtts://"):
        load(PRINTBRIDGE_MQTT_URL="mqtt://broker.lan", PRINTBRIDGE_MQTT_CA=str(ca))


def test_flags_override_the_environment_and_are_named_in_errors() -> None:
    s = load_settings(environ={"PRINTBRIDGE_HTTP_PORT": "1"}, flags={"http_port": "2"})
    assert s.http_port == 2
    assert load_settings(environ={"PRINTBRIDGE_HTTP_PORT": "1"}, flags={"http_port": None}).http_port == 1
    with pytest.raises(ConfigError, match=r"^--http-port:"):
        load_settings(environ={"PRINTBRIDGE_HTTP_PORT": "1"}, flags={"http_port": "x"})


def test_unrelated_variables_are_ignored() -> None:
    assert load(PRINTBRIDGE_UNKNOWN="x", HOME="/root") == Settings()


def test_settings_are_frozen() -> None:
    s = load()
    with pytest.raises(AttributeError):
        s.http_port = 1  # type: ignore[misc]


# -- the command line exits 2 naming the variable ------------------------------------------------------------


def run_cli(tmp_path: Path, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    environ.update(PRINTBRIDGE_DB=str(tmp_path / "cli.db"), **env)
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_bad_port_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = run_cli(tmp_path, ["serve"], PRINTBRIDGE_HTTP_PORT="eighty")
    assert result.returncode == 2, result
    assert "PRINTBRIDGE_HTTP_PORT" in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "cli.db").exists()  # stopped before touching anything


def test_cli_other_commands_validate_the_same_variables(tmp_path: Path) -> None:
    result = run_cli(tmp_path, ["user", "add", "bob"], PRINTBRIDGE_HA_PREFIX="pb", PRINTBRIDGE_BASE_TOPIC="pb")
    assert result.returncode == 2, result
    assert "PRINTBRIDGE_HA_PREFIX" in result.stderr
    assert result.stdout == ""


def test_cli_bad_flag_value_exits_2_naming_the_flag(tmp_path: Path) -> None:
    result = run_cli(tmp_path, ["serve", "--status-ttl-s", "-5"])
    assert result.returncode == 2, result
    assert "--status-ttl-s" in result.stderr


def test_public_mqtt_url_defaults_to_the_brokers_without_credentials() -> None:
    assert load().agent_mqtt_url == "mqtt://127.0.0.1:1883"
    assert load(PRINTBRIDGE_MQTT_URL="mqtts://bridge:pw@10.0.0.2:9883").agent_mqtt_url == "mqtts://10.0.0.2:9883"
    assert load(PRINTBRIDGE_MQTT_URL="mqtt://[::1]:1884").agent_mqtt_url == "mqtt://[::1]:1884"
    s = load(PRINTBRIDGE_MQTT_URL="mqtt://u:p@127.0.0.1", PRINTBRIDGE_PUBLIC_MQTT_URL="mqtts://printers.lan")
    assert s.agent_mqtt_url == "mqtts://printers.lan:8883"


@pytest.mark.parametrize("url", ["", "printers.lan", "http://printers.lan", "mqtt://printers.lan/x", "mqtt://u@h"])
def test_public_mqtt_url_invalid(url: str) -> None:
    refused("PRINTBRIDGE_PUBLIC_MQTT_URL", url)


def test_public_mqtt_url_refuses_credentials_without_echoing_them() -> None:
    err = refused("PRINTBRIDGE_PUBLIC_MQTT_URL", "mqtt://agent:hunter2@printers.lan")
    assert "hunter2" not in str(err) and "PRINTBRIDGE_PUBLIC_MQTT_URL" in str(err)
