"""Resource limits of the real server: a 64 MB header, hundreds of slow connections, a full
house of busy connections, and an abandoned upload."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServerProcess, StartServer, wait_for

pytestmark = pytest.mark.e2e

SLOW_CONNECTIONS = 300
CLIENT_TIMEOUT = 1.0


def peak_rss_mb(server: ServerProcess) -> float:
    """The server process's peak resident memory so far (VmHWM), in MB."""
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text(encoding="ascii")
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def connect(server: ServerProcess) -> socket.socket:
    """A raw TCP connection to the server."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    return sock


def answer_of(sock: socket.socket) -> bytes:
    """What the server sent before it closed (empty if it only closed); a socket timeout, if
    the server keeps the connection open, fails the test."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:  # the server closed with our data still unread
        pass
    return b"".join(chunks)


def test_a_64_mb_header_is_refused_without_being_buffered(start_server: StartServer) -> None:
    server = start_server()
    before = peak_rss_mb(server)
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    sent = 0

    with connect(server) as sock:
        try:
            sock.sendall(head)
            chunk = b"a" * (1024 * 1024)
            for _ in range(64):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection mid-header, as it should
            pass
        answer = answer_of(sock)

    assert sent < 16 * 1024 * 1024, "the server kept reading a header far past its limit"
    if answer:  # or the connection was only reset
        assert answer.startswith(b"HTTP/1.1 431 ")
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"] == "headers_too_large"
    assert peak_rss_mb(server) - before < 16
    with server.client() as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize("path", ["/health", "/workflow/1"])
def test_a_head_over_the_limit_that_arrives_whole_is_refused(
    start_server: StartServer, path: str
) -> None:
    """A 40 KB head (limit 16 KB) in one send: it reaches the server in one read, past the
    limit and complete at once, and is refused all the same (the fast read path included)."""
    server = start_server()
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 40_000}\r\n\r\n"

    with connect(server) as sock:
        sock.sendall(head.encode())
        answer = answer_of(sock)

    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "headers_too_large"
    with server.client() as client:
        assert client.get("/health").status_code == 200


def test_slow_connections_are_cut_off_and_others_are_served_meanwhile(
    start_server: StartServer,
) -> None:
    server = start_server(MAX_CONNECTIONS="50", CLIENT_TIMEOUT_SECONDS=str(CLIENT_TIMEOUT))
    with contextlib.ExitStack() as closing:
        slow = [closing.enter_context(connect(server)) for _ in range(SLOW_CONNECTIONS)]
        for number, sock in enumerate(slow):
            if number % 2:
                sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # a head that never ends
        opened = time.monotonic()
        latencies = []

        with server.client() as client:
            for _ in range(20):
                began = time.monotonic()
                assert client.get("/health").status_code == 200
                latencies.append(time.monotonic() - began)

        assert max(latencies) < 1.0, f"a normal client waited {max(latencies):.3f} s"
        for sock in slow:
            sock.settimeout(max(0.1, opened + CLIENT_TIMEOUT + 3 - time.monotonic()))
            answer = answer_of(sock)  # returns once the server closed it
            assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:100]
        assert time.monotonic() - opened < CLIENT_TIMEOUT + 3


def test_past_max_connections_busy_with_requests_a_new_request_gets_503(
    start_server: StartServer,
) -> None:
    server = start_server(MAX_CONNECTIONS="2")
    streams = [connect(server) for _ in range(2)]
    for sock in streams:
        sock.sendall(b"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")

    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        refused = client.get("/health")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json() == {
        "error": "too_many_connections",
        "detail": "the server is busy with 2 connections (MAX_CONNECTIONS); "
        "nothing was done, try again in 1 s",
    }
    for sock in streams:
        sock.close()
    with server.client() as client:
        wait_for(lambda: client.get("/health").status_code, lambda code: code == 200, what="ok")


def test_an_abandoned_upload_is_one_info_line_not_an_error(start_server: StartServer) -> None:
    server = start_server()

    with connect(server) as sock:
        sock.sendall(
            b"POST /workflow/start HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            + b'{"name": "'
            + b"x" * 1000
        )
        time.sleep(0.2)  # the body has begun to arrive before the client goes away

    line = "client left before sending all of POST /workflow/start"
    wait_for(server.output, lambda output: line in output, what="the INFO line")
    output = server.output()
    assert "Traceback" not in output
    assert " ERROR " not in output
    with server.client() as client:
        assert client.get("/workflows").json() == []


def test_a_pipelined_request_running_is_not_taken_for_an_idle_connection(
    start_server: StartServer,
) -> None:
    server = start_server(CLIENT_TIMEOUT_SECONDS=str(CLIENT_TIMEOUT), SSE_KEEPALIVE_SECONDS="0.2")

    with connect(server) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        received = b""
        deadline = time.monotonic() + 3 * CLIENT_TIMEOUT
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            assert chunk, "the server closed a running (pipelined) stream as if it were idle"
            received += chunk

    assert received.startswith(b"HTTP/1.1 200 ")
    assert received.count(b"HTTP/1.1 200 ") == 2


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer (head and Content-Length body): they may arrive in separate segments."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {answer!r}"
        answer += chunk
    head, _, rest = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {answer + rest!r}"
        rest += chunk
    return head + b"\r\n\r\n" + rest


def test_the_unread_rest_of_an_answered_body_is_not_counted_as_a_head(
    start_server: StartServer,
) -> None:
    server = start_server()
    body = b'{"x": "' + b"a" * 300_000 + b'"}'

    with connect(server) as sock:
        sock.sendall(
            b"POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body[:100]
        )
        first = read_answer(sock)
        assert first.startswith(b"HTTP/1.1 404 ")
        sock.sendall(body[100:])
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        second = b""
        while b"\r\n\r\n" not in second or not second.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection: {second!r}"
            second += chunk

    assert second.startswith(b"HTTP/1.1 200 "), second
