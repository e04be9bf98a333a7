"""bridge.mqtt.jsonrpc (Moonraker's JSON-RPC over MQTT) and the `[mqtt]` snippet of moonraker.conf."""

from __future__ import annotations

import configparser

import msgspec
import pytest

from bridge.domain.moonraker_snippet import build_moonraker_snippet, instance_name
from bridge.mqtt.jsonrpc import MAX_REPLY_BYTES, RpcFormatError, RpcReply, decode_reply, encode_request, peek_id


def test_a_request_is_json_rpc_2_with_the_id_given() -> None:
    assert encode_request("printer.print.pause", "cmd-1") == (
        b'{"jsonrpc":"2.0","method":"printer.print.pause","id":"cmd-1"}'
    )
    body = encode_request("printer.objects.query", "q-2", {"objects": {"webhooks": ["state"]}})
    assert msgspec.json.decode(body) == {
        "jsonrpc": "2.0",
        "method": "printer.objects.query",
        "id": "q-2",
        "params": {"objects": {"webhooks": ["state"]}},
    }


def test_replies_ok_results_and_errors() -> None:
    ok = decode_reply(b'{"jsonrpc":"2.0","result":"ok","id":"cmd-1"}')
    assert ok == RpcReply("cmd-1", result="ok") and ok.ok
    result = decode_reply(b'{"jsonrpc":"2.0","result":{"klippy_connected":true},"id":"q"}')
    assert result.result == {"klippy_connected": True} and not result.ok  # a result, but not "ok"
    error = decode_reply(b'{"jsonrpc":"2.0","error":{"code":503,"message":"Klippy Host not connected"},"id":"c"}')
    assert error == RpcReply("c", error="Klippy Host not connected", code=503) and not error.ok
    other = decode_reply(b'{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}')
    assert other.id is None
    assert peek_id(b'{"jsonrpc":"2.0","result":"ok","id":203}') == 203


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"result":"ok","id":"a"}',  # no jsonrpc
        b'{"jsonrpc":"1.0","result":"ok","id":"a"}',
        b'{"jsonrpc":"2.0","id":"a"}',  # neither result nor error
        b'{"jsonrpc":"2.0","result":"ok","error":{"code":1,"message":"x"},"id":"a"}',
        b'{"jsonrpc":"2.0","error":{"code":"x","message":"y"},"id":"a"}',
        b'{"jsonrpc":"2.0","error":"bad","id":"a"}',
        b'{"jsonrpc":"2.0","result":"ok","id":["a"]}',
        b'{"jsonrpc":"2.0","result":"\xff","id":"a"}',
    ],
)
def test_malformed_replies_are_refused(payload: bytes) -> None:
    with pytest.raises(RpcFormatError):
        decode_reply(payload)


def test_an_oversized_reply_is_refused_before_decoding() -> None:
    big = b'{"jsonrpc":"2.0","result":"' + b"x" * MAX_REPLY_BYTES + b'","id":"a"}'
    with pytest.raises(RpcFormatError, match="limit"):
        peek_id(big)
    with pytest.raises(RpcFormatError, match="limit"):
        decode_reply(big)


def parse_ini(text: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)  # as Moonraker reads its configuration
    parser.read_string(text)
    return parser["mqtt"]


def test_the_snippet_places_moonraker_under_the_printers_topic_space() -> None:
    text = build_moonraker_snippet("mqtt://printers.lan:1884", "printer-7", "tok_-en", instance_name("pb", 7))
    section = parse_ini(text)
    assert section["address"] == "printers.lan"
    assert section["port"] == "1884"
    assert section["username"] == "printer-7"
    assert section["password"] == "tok_-en"
    assert section["instance_name"] == "pb/printers/7"
    assert section["mqtt_protocol"] == "v3.1.1"
    assert section["default_qos"] == "1"
    assert "enable_tls" not in section
    objects = [line.strip() for line in section["status_objects"].strip().splitlines()]
    assert objects == [
        "webhooks=state,state_message",
        "print_stats=state,filename,total_duration,print_duration,message",
        "virtual_sdcard=progress,is_active",
        "pause_resume=is_paused",
        "extruder=temperature,target",
        "heater_bed=temperature,target",
    ]


def test_default_ports_and_tls() -> None:
    assert parse_ini(build_moonraker_snippet("mqtt://10.0.0.2", "u", "p", "b/printers/1"))["port"] == "1883"
    tls = parse_ini(build_moonraker_snippet("mqtts://broker.example", "u", "p", "b/printers/1"))
    assert (tls["port"], tls["enable_tls"]) == ("8883", "True")
    v6 = parse_ini(build_moonraker_snippet("mqtt://[fd00::2]:1883", "u", "p", "b/printers/1"))
    assert v6["address"] == "fd00::2"
