"""Latency agentgw adds to each relayed realtime frame, direct versus through the gateway.

An echo upstream (`--echo-server`, a Starlette WebSocket on uvicorn, as the sim is) answers each
`input_audio_buffer.append` with a `response.output_audio.delta` carrying the same audio. Clients
stream 24 kHz 16-bit audio in 20 ms frames (960 bytes, paced in real time) and time each frame's
round trip: direct to the echo upstream, then through agentgw (SQLite store, a real key, a price,
spans written). Through agentgw a frame is relayed twice (up as an append, down as an audio delta),
so the added latency per relayed frame is half the difference of the round trips. Printed at 1 and
20 concurrent sessions; nothing is asserted (target: <= 1 ms added p50 at 20 sessions).

    python -m tests.perf.realtime            # ~1 minute (3 interleaved rounds of 4 s per cell)
    python -m tests.perf.realtime --seconds 2 --rounds 1
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import orjson
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.e2e.procs import Proc, create_key, free_port, start, start_gateway
from tests.perf.cpu import Snapshot, Usage

FRAME_BYTES = 24_000 * 2 // 50
CONFIG = """\
listen: {{host: 127.0.0.1}}
store: sqlite:///gw.db
providers:
  - {{name: echo, type: openai, base_url: "{echo}/v1"}}
models:
  - {{name: voice, targets: [{{provider: echo, model: echo-realtime}}]}}
prices:
  - {{provider: echo, model: echo-realtime, input_per_1m: 4, per_audio_second: 0.0001}}
"""


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text('{"type":"session.created","session":{}}')
    try:
        while True:
            event = orjson.loads(await websocket.receive_text())
            if event.get("type") == "input_audio_buffer.append":
                reply = {
                    "type": "response.output_audio.delta",
                    "item_id": event.get("event_id"),
                    "delta": event["audio"],
                }
                await websocket.send_text(orjson.dumps(reply).decode())
    except WebSocketDisconnect:
        return


def serve_echo(port: int) -> None:
    app = Starlette(routes=[WebSocketRoute("/v1/realtime", _echo)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="info", access_log=False)


async def _session(url: str, headers: dict[str, str], frames: int, out: list[float]) -> None:
    audio = base64.b64encode(bytes(FRAME_BYTES)).decode()
    sent: dict[str, float] = {}
    async with websockets.connect(url, additional_headers=headers, max_size=None) as ws:
        await ws.recv()  # session.created

        async def receive() -> None:
            for _ in range(frames):
                while True:
                    event = orjson.loads(await ws.recv())
                    if event["type"] == "response.output_audio.delta":
                        break
                out.append((time.perf_counter() - sent.pop(event["item_id"])) * 1000)

        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            start_at = time.perf_counter()
            for n in range(frames):
                # Real-time pacing: frame n leaves at n x 20 ms (no drift from slow sends).
                await anyio.sleep(max(0.0, start_at + n * 0.02 - time.perf_counter()))
                event_id = f"f{n}"
                sent[event_id] = time.perf_counter()
                frame = {"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio}
                await ws.send(orjson.dumps(frame).decode())


async def _measure(url: str, headers: dict[str, str], sessions: int, frames: int) -> list[float]:
    out: list[float] = []
    async with anyio.create_task_group() as tg:
        for _ in range(sessions):
            tg.start_soon(_session, url, headers, frames, out)
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per session and cell")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        serve_echo(args.echo_server)
        return 0
    frames = int(args.seconds * 50)
    port = free_port()
    echo = start([sys.executable, "-m", "tests.perf.realtime", "--echo-server", str(port)], port)
    procs: list[Proc] = [echo]
    try:
        with tempfile.TemporaryDirectory(prefix="agentgw-perf-rt-") as tmp:
            config = Path(tmp) / "agentgw.yaml"
            config.write_text(CONFIG.format(echo=echo.url))
            key = create_key(config, "perf", "engineering/platform/perf")["key"]
            gateway = start_gateway(config)
            procs.append(gateway)
            direct = echo.url.replace("http", "ws") + "/v1/realtime?model=echo-realtime"
            through = gateway.url.replace("http", "ws") + "/v1/realtime?model=voice"
            auth = {"Authorization": f"Bearer {key}"}
            print(f"24 kHz pcm16, 20 ms frames ({FRAME_BYTES} B), {args.seconds:g} s per session")
            print(
                f"{'sessions':>8} {'path':>8} {'rtt p50':>9} {'rtt p99':>9} {'frames':>7}"
            )  # frames per round
            for sessions in (1, 20):
                anyio.run(_measure, through, auth, 1, 25)  # warm the gateway's path
                cells: dict[str, list[tuple[float, float]]] = {"direct": [], "agentgw": []}
                cpu: list[Usage] = []
                pids = [echo.popen.pid, gateway.popen.pid]
                for _ in range(args.rounds):  # interleaved, so bursts of other load hit both
                    for name, url, headers in (("direct", direct, {}), ("agentgw", through, auth)):
                        before = Snapshot.take(gateway.popen.pid, pids)
                        rtt = anyio.run(_measure, url, headers, sessions, frames)
                        if name == "agentgw":
                            cpu.append(
                                Usage.between(before, Snapshot.take(gateway.popen.pid, pids))
                            )
                        cells[name].append((_pct(rtt, 0.5), _pct(rtt, 0.99)))
                for name, values in cells.items():
                    p50 = statistics.median(v[0] for v in values)
                    p99 = statistics.median(v[1] for v in values)
                    print(
                        f"{sessions:>8} {name:>8} {p50:>7.3f}ms {p99:>7.3f}ms"
                        f" {frames * sessions:>7}"
                    )
                added = [
                    ((a[0] - d[0]) / 2, (a[1] - d[1]) / 2)
                    for d, a in zip(cells["direct"], cells["agentgw"], strict=True)
                ]
                added50 = statistics.median(v[0] for v in added)
                added99 = statistics.median(v[1] for v in added)
                print(
                    f"{sessions:>8} {'added':>8} {added50:>7.3f}ms {added99:>7.3f}ms"
                    "   per relayed frame (half the round-trip difference, median of rounds)"
                )
                spent = [u.target_seconds for u in cpu if u.target_seconds is not None]
                other = [u.foreign_cores for u in cpu if u.foreign_cores is not None]
                if spent:
                    per_frame = statistics.median(spent) / (2 * frames * sessions) * 1e6
                    noise = (
                        f", other processes {statistics.median(other):.2f} cores" if other else ""
                    )
                    print(f"{'':>8} agentgw CPU {per_frame:.0f} us per relayed frame{noise}")
    finally:
        for proc in reversed(procs):
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
