"""The event-stream clients of sse_lag_p99_ms: every event frame of a chunked stream counted
once with its lag, however the reads cut it, and a stream that skips or repeats a position
refused."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from suite.suite_sse import Lags, Stream

pytestmark = pytest.mark.anyio

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"
RECORDED = [datetime(2026, 1, 1, 12, 0, second, 250_000 * (second % 2), UTC) for second in range(9)]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Transport:
    """What the stream writes, and whether it closed its connection."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def chunk(body: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(body), body)


def frames(first: int, last: int) -> bytes:
    """Event frames as the server writes them (one commit's time for each pair of positions)."""
    return b"".join(
        b'id: %d\nevent: StepSucceeded\ndata: {"position":%d,"data":{"note":"id: 1"},'
        b'"recorded_at":"%b","hash":"ab"}\n\n'
        % (position, position, RECORDED[position // 2].isoformat().encode())
        for position in range(first, last + 1)
    )


async def receive(data: bytes, cut_every: int) -> tuple[Stream, Lags, float, float]:
    """`data` fed to a stream in reads of `cut_every` bytes; the stream, its lags and the
    clock before and after."""
    lags = Lags(asyncio.get_running_loop())
    stream = Stream(8000, lags)
    transport = Transport()
    before = time.time()
    stream.connection_made(transport)  # type: ignore[arg-type]  # a stand-in
    for start in range(0, len(data), cut_every):
        stream.data_received(data[start : start + cut_every])
        await asyncio.sleep(0)  # the reads of one turn are parsed after it
    after = time.time()
    assert transport.written.startswith(b"GET /events/stream HTTP/1.1\r\n")
    return stream, lags, before, after


@pytest.mark.parametrize("cut_every", [1, 7, 100, 100_000])
async def test_every_event_frame_counts_once_with_its_lag_however_the_reads_cut_it(
    cut_every: int,
) -> None:
    body = [b": connected\n\n", frames(1, 3), b": keep-alive\n\n", frames(4, 4), frames(5, 8)]
    data = HEAD + b"".join(chunk(part) for part in body)

    stream, lags, before, after = await receive(data, cut_every)

    assert stream.connected.done() and stream.connected.exception() is None
    assert stream.last == 8
    assert lags.error is None
    values = lags.values()
    assert len(values) == 8
    for position, lag in enumerate(values, 1):
        recorded = RECORDED[position // 2].timestamp()
        assert before - recorded <= lag <= after - recorded


async def test_streams_of_one_process_that_start_at_different_positions_all_count() -> None:
    lags = Lags(asyncio.get_running_loop())
    late, early, other = Stream(8000, lags), Stream(8000, lags), Stream(8000, lags)
    before = time.time()
    reads = [
        (late, frames(5, 6)),
        (other, frames(2, 3)),
        (early, frames(2, 6)),  # both ends seen before, not 4 (only this read holds it)
        (late, frames(7, 8)),
        (early, frames(7, 8)),
    ]
    for stream in (late, early, other):
        stream.connection_made(Transport())  # type: ignore[arg-type]  # a stand-in
        stream.data_received(HEAD + chunk(b": connected\n\n"))
    for stream, body in reads:
        stream.data_received(chunk(body))
        await asyncio.sleep(0)
    after = time.time()

    assert lags.error is None
    assert [late.last, early.last, other.last] == [8, 8, 3]
    received = [5, 6, 2, 3, *range(2, 7), 7, 8, 7, 8]
    values = lags.values()
    assert len(values) == len(received)
    for position, lag in zip(received, values, strict=True):
        recorded = RECORDED[position // 2].timestamp()
        assert before - recorded <= lag <= after - recorded


@pytest.mark.parametrize(
    ("second", "problem"), [((5, 6), "missing"), ((3, 5), "repeated"), ((2, 2), "repeated")]
)
@pytest.mark.parametrize("cut_every", [1, 100_000])  # across reads, and within one
async def test_a_stream_that_skips_or_repeats_a_position_fails_the_figure(
    second: tuple[int, int], problem: str, cut_every: int
) -> None:
    body = [b": connected\n\n", frames(1, 3), frames(*second)]
    data = HEAD + b"".join(chunk(part) for part in body)

    _, lags, _, _ = await receive(data, cut_every)

    assert lags.error is not None, problem
    assert "out of order, repeated or missing" in lags.error


async def test_a_refused_stream_fails_its_connection() -> None:
    data = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}"

    stream, _, _, _ = await receive(data, 100_000)

    assert isinstance(stream.connected.exception(), RuntimeError)


@pytest.mark.e2e
def test_the_figure_counts_every_event_at_every_client_of_a_real_server(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = [sys.executable, str(RUN), "--quick", "--scale", "0.05", "--json", str(out)]
    done = subprocess.run(
        [*command, "--only", "sse_lag_p99_ms"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (figure,) = json.loads(out.read_text())["figures"]
    assert figure["name"] == "sse_lag_p99_ms"
    assert figure["value"] > 0
    assert figure["note"].startswith("10 clients;")
    assert "not delivered" not in figure["note"]
    delivered = re.search(r"([0-9,]+) frames delivered", figure["note"])
    assert delivered is not None
    assert int(delivered.group(1).replace(",", "")) % 10 == 0  # the same events at each client
