"""Shared pieces of the benchmarks: a private Mosquitto, seeded databases, servers as subprocesses, wrk,
paho publishers in their own processes, and the table / RESULT output.

Every benchmark runs as `python -m bench.NAME` from the repository root, starts what it needs on free
ports on 127.0.0.1 and stops it again.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from bridge.agent.client import nodelay_client
from bridge.agent.messages import AgentIdentity, build_flags, build_status_message
from bridge.mqtt.topics import Topics

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASE_TOPIC = "printbridge"
TOPICS = Topics(BASE_TOPIC)
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.01)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


# -- Mosquitto ----------------------------------------------------------------------------------------------


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    return found


@dataclass
class Mosquitto:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[Mosquitto]:
    """The broker settings of mosquitto/mosquitto.conf that matter for speed (TCP_NODELAY, queue limits),
    anonymous and without the dynamic-security plugin, so that the bridge does not provision thousands
    of accounts while it is being measured; quiet logging."""
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings false",
                "allow_anonymous true",
                f"listener {port} 127.0.0.1",
                "persistence false",
                "set_tcp_nodelay true",
                "max_queued_messages 100000",
                "max_inflight_messages 100",
                "message_size_limit 5242880",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "",
            ]
        )
    )
    log = (workdir / "mosquitto.log").open("wb")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        wait_port(port)
        yield Mosquitto(port, proc)
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pbbench-") as d:
        yield Path(d)


# -- agent messages -----------------------------------------------------------------------------------------

PRINT_TS = 1716904799


def status_message(ts: float, *, printing: bool = True, completion: float = 42.5) -> bytes:
    """An Obico agent message of about 600 bytes, `status._ts` = ts: the agent module's message with the
    extra fields OctoPrint sends (file size and date, file position, offsets, chamber, Z)."""
    built = build_status_message(
        ts=ts,
        current_print_ts=PRINT_TS,
        state_text="Printing" if printing else "Operational",
        flags=build_flags(printing=printing, paused=False),
        filename="benchy_0.2mm_PLA_MK3S_1h.gcode",
        completion=completion,
        print_time=1160,
        print_time_left=2068,
        temperatures={
            "tool0": {"actual": 215.3, "target": 215.0, "offset": 0},
            "bed": {"actual": 60.1, "target": 60.0, "offset": 0},
            "chamber": {"actual": 31.0, "target": None, "offset": 0},
        },
        agent=AgentIdentity(name="octoprint_obico", version="2.6.1"),
    )
    message = msgspec.to_builtins(built)
    message["status"]["job"]["file"].update(size=1824512, date=1716900000)
    message["status"]["progress"]["filepos"] = 775417
    message["status"]["currentZ"] = 4.2
    return json.dumps(message, separators=(",", ":")).encode()


# -- databases ----------------------------------------------------------------------------------------------


def seed_db(db_path: Path, printers: int, *, with_status: bool = True, with_print: bool = True) -> str:
    """A database with user `bench` owning `printers` printers, each (optionally) with a fresh status and
    a print in progress, written through the bridge's Store. Returns the user's API token."""
    from bridge.domain.status import apply_status_fields
    from bridge.state.store import Store

    store = Store(db_path)
    store.load()
    _, token = store.users.add("bench")
    owner = store.users.id_of("bench")
    assert owner is not None
    now = time.time()
    store.conn.execute("BEGIN")
    # one transaction for the whole fleet: Store.transaction() would commit per printer
    store.database.transaction = _no_transaction(store)  # type: ignore[method-assign]
    for n in range(printers):
        rec = store.printers.create(owner, f"Printer {n + 1}")
        if with_status:
            msg = json.loads(status_message(now))
            rec.status_raw = json.dumps(msg["status"], separators=(",", ":")).encode()
            rec.settings_raw = json.dumps(msg["settings"], separators=(",", ":")).encode()
            rec.agent_name, rec.agent_version = "octoprint_obico", "2.6.1"
            rec.status_ts = now
            rec.status_received_at = now
            rec.available = True
            apply_status_fields(rec, rec.status_raw)
            store.printers.touch(rec)
        if with_print:
            store.prints.open(rec, PRINT_TS, "benchy_0.2mm_PLA_MK3S_1h.gcode")
    store.flush()
    store.conn.execute("COMMIT")
    store.conn.close()
    return token


def _no_transaction(store: Any) -> Any:
    @contextlib.contextmanager
    def transaction() -> Iterator[Any]:
        yield store.conn

    return transaction


# -- servers ------------------------------------------------------------------------------------------------


def bridge_env(db: Path, mqtt_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRINTBRIDGE_")}
    env.update(
        {
            "PRINTBRIDGE_DB": str(db),
            "PRINTBRIDGE_MQTT_URL": mqtt_url,
            "PRINTBRIDGE_HTTP_HOST": "127.0.0.1",
            "PRINTBRIDGE_HTTP_PORT": str(port),
            "PRINTBRIDGE_STATUS_TTL_S": "3600",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    started: float  # time.perf_counter() at spawn
    ready_s: float = 0.0  # seconds from spawn to the first 200 (when waited for)

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def spawn(name: str, argv: Sequence[str], env: dict[str, str], port: int, log_path: Path) -> Server:
    log = log_path.open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    log.close()
    return Server(name, port, proc, started)


def printbridge_argv(server: str) -> list[str]:
    """`printbridge serve` (uvicorn with uvloop + httptools), or the same app under granian."""
    if server == "uvicorn":
        return [str(BIN / "printbridge"), "serve"]
    if server == "granian":
        return [*_granian(), "bench.apps:printbridge_app"]
    raise ValueError(server)


def baseline_argv(server: str, port: int) -> list[str]:
    if server == "uvicorn":
        return [
            str(BIN / "uvicorn"),
            "--factory",
            "bench.apps:baseline_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    if server == "granian":
        return [*_granian(), "--port", str(port), "bench.apps:baseline_app"]
    raise ValueError(server)


def _granian() -> list[str]:
    exe = BIN / "granian"
    if not exe.exists():
        raise SystemExit("granian is not installed: .venv/bin/pip install granian")
    return [str(exe), "--interface", "asgi", "--factory", "--host", "127.0.0.1", "--log-level", "warning"]


def start_printbridge(
    work: Path, db: Path, mqtt_url: str, *, server: str = "uvicorn", wait: bool = True, **extra: str
) -> Server:
    port = free_port()
    env = bridge_env(db, mqtt_url, port, **extra)
    argv = printbridge_argv(server)
    if server == "granian":
        argv = [*argv[:-1], "--port", str(port), argv[-1]]
    srv = spawn(f"printbridge/{server}", argv, env, port, work / f"printbridge-{port}.log")
    if wait:
        try:
            srv.ready_s = wait_healthy(srv, work / f"printbridge-{port}.log")
        except BaseException:
            stop_process(srv.process)
            raise
    return srv


def start_baseline(work: Path, body_files: dict[str, Path], *, server: str = "uvicorn") -> Server:
    port = free_port()
    env = dict(os.environ)
    env.update({f"BENCH_BODY_{k.upper()}": str(v) for k, v in body_files.items()})
    srv = spawn(f"bare litestar/{server}", baseline_argv(server, port), env, port, work / f"baseline-{port}.log")
    try:
        srv.ready_s = wait_http(srv, "/ready", work / f"baseline-{port}.log")
    except BaseException:
        stop_process(srv.process)
        raise
    return srv


def http_get(port: int, path: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(srv: Server, path: str, log_path: Path, timeout: float = 30.0, poll: float = 0.02) -> float:
    """Wait until `path` answers 200; returns the seconds since the server was spawned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if srv.process.poll() is not None:
            raise RuntimeError(f"{srv.name} exited with {srv.process.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, _ = http_get(srv.port, path, timeout=1.0)
            if status == 200:
                return time.perf_counter() - srv.started
        time.sleep(poll)
    raise RuntimeError(f"{srv.name}: {path} not 200 after {timeout} s:\n{log_path.read_text()[-3000:]}")


def wait_healthy(srv: Server, log_path: Path, timeout: float = 30.0) -> float:
    return wait_http(srv, "/health", log_path, timeout)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# -- wrk ----------------------------------------------------------------------------------------------------


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors + non-2xx responses
    extra: dict[str, str]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    url: str,
    *,
    duration: float,
    connections: int = 32,
    threads: int = 1,
    token: str | None = None,
    script: Path | None = None,
) -> WrkResult:
    if not Path(WRK).exists():
        raise SystemExit("wrk is not installed (apt-get install wrk, or `make bench`)")
    argv = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s"]
    if token:
        argv += ["-H", f"Authorization: Bearer {token}"]
    if script is not None:
        argv += ["-s", str(script)]
    run = subprocess.run([*argv, url], capture_output=True, text=True, timeout=duration + 60)
    if run.returncode != 0:
        raise RuntimeError(f"wrk failed (exit {run.returncode}):\n{run.stdout}\n{run.stderr}")
    out = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    extra = dict(re.findall(r"^EXTRA (\w+)=(\S+)$", out, re.M))
    return WrkResult(rps, p50, p99, requests, errors, extra)


# -- MQTT clients -------------------------------------------------------------------------------------------


def paho_client(client_id: str, protocol: str = "3.1.1") -> Any:
    """A paho-mqtt 2 client that sets TCP_NODELAY on its socket (the agent module's)."""
    from paho.mqtt.enums import MQTTProtocolVersion

    return nodelay_client(client_id, MQTTProtocolVersion.MQTTv5 if protocol == "5" else MQTTProtocolVersion.MQTTv311)


def publisher(
    port: int,
    printer_ids: list[int],
    rounds: int,
    rate_per_s: float,
    start_at: float,
    results: Any,
    marker: float = 0.0,
) -> None:
    """One publisher process: `rounds` status messages for each printer, QoS 1, in round-robin order.

    `rate_per_s` 0 publishes as fast as the broker acknowledges (at most 1,000 unacknowledged). Message k
    of a printer carries `status._ts = marker + k + 1`. Puts (sent, first_publish, all_acked) on `results`
    (time.time() values).
    """
    client = paho_client(f"bench-pub-{os.getpid()}")
    acked = 0

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port, keepalive=60)
    while not client.is_connected():
        client.loop(0.01)
    sent = 0
    delay = 0.0 if rate_per_s <= 0 else 1.0 / rate_per_s
    while time.time() < start_at:
        client.loop(0.005)
    first = time.time()
    next_at = first
    for k in range(rounds):
        ts = marker + k + 1
        body = status_message(ts, completion=float(k % 100))
        for pid in printer_ids:
            client.publish(TOPICS.status(pid), body, qos=1)
            sent += 1
            if delay:
                next_at += delay
                while True:
                    client.loop(0)
                    now = time.time()
                    if now >= next_at:
                        break
                    time.sleep(min(next_at - now, 0.002))
            elif sent % 50 == 0:
                client.loop(0)
                while sent - acked > 1000:
                    client.loop(0.001)
    while acked < sent:
        client.loop(0.01)
    done = time.time()
    client.disconnect()
    results.put((sent, first, done))


def run_publishers(
    port: int, printers: list[int], rounds: int, processes: int, rate_per_s: float = 0.0, marker: float = 0.0
) -> tuple[int, float, float, list[Any]]:
    """Start `processes` publisher processes over disjoint slices of `printers`; returns (sent, first
    publish, last ack, the processes) once all have finished."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 1.0 + 0.3 * processes
    procs = []
    for i in range(processes):
        chunk = printers[i::processes]
        p = ctx.Process(
            target=publisher,
            args=(port, chunk, rounds, rate_per_s / processes if rate_per_s else 0.0, start_at, results, marker),
            daemon=True,
        )
        p.start()
        procs.append(p)
    outs: list[Any] = []
    deadline = time.monotonic() + 300
    try:
        while len(outs) < len(procs):
            with contextlib.suppress(queue.Empty):
                outs.append(results.get(timeout=0.2))
                continue
            failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                raise RuntimeError(f"publisher processes failed (exit codes {failed}) or timed out")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return sum(o[0] for o in outs), min(o[1] for o in outs), max(o[2] for o in outs), procs


# -- output -------------------------------------------------------------------------------------------------


@dataclass
class BackgroundLoad:
    """Every printer publishing one status a second from publisher processes, driven from a thread;
    `sent` and `seconds` are filled in when they have finished (`join`)."""

    thread: threading.Thread
    figures: dict[str, float]

    def join(self, timeout: float) -> None:
        self.thread.join(timeout=timeout)

    @property
    def rate(self) -> float:
        return self.figures.get("sent", 0) / max(self.figures.get("seconds", 1), 1e-9)


def start_background_load(port: int, printers: list[int], seconds: float, processes: int) -> BackgroundLoad:
    """Start the load and return once it runs: the publishers' start-up, then one second of load."""
    figures: dict[str, float] = {}

    def run() -> None:
        rate = float(len(printers))
        sent, first, done, _ = run_publishers(port, printers, round(seconds), processes, rate_per_s=rate)
        figures.update(sent=sent, seconds=done - first)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(1.0 + 0.3 * processes + 1.0)
    return BackgroundLoad(thread, figures)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n## {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    print(flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def result(name: str, ratio: float, target: str, ok: bool) -> bool:
    print(f"RESULT {name} ratio={ratio:.3f} target={target} {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]
