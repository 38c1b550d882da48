"""
The raw TCP loopback ceiling: a plain socket sender and receiver moving the same bytes as NCP.

``python raw_tcp.py send MESSAGE_BYTES BATCH`` listens on 127.0.0.1, prints ``{"port": N}``, and
writes BATCH messages of MESSAGE_BYTES per ``sendall`` to the first connection until it closes.
``python raw_tcp.py recv PORT MESSAGE_BYTES DURATION`` connects, reads into a preallocated buffer
for DURATION seconds, counts whole messages, and prints one JSON line like ``ncp_client.py``.
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import time


def send(message_bytes: int, batch: int) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    connection, _ = listener.accept()
    message = (bytes(range(256)) * (message_bytes // 256) + bytes(message_bytes % 256)) * batch
    view = memoryview(message)
    try:
        while True:
            connection.sendall(view)
    except OSError:
        pass
    finally:
        connection.close()
        listener.close()


def recv(port: int, message_bytes: int, duration: float) -> dict:
    connection = socket.create_connection(("127.0.0.1", port))
    buffer = bytearray(max(message_bytes, 1 << 20))
    view = memoryview(buffer)
    # Start the clock once the first bytes have arrived, like the NCP client does.
    connection.recv_into(view)
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + duration
    received = 0
    while time.perf_counter() < deadline:
        count = connection.recv_into(view)
        if not count:
            break
        received += count
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    connection.close()
    messages = received / message_bytes
    return {
        "fields": messages,
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "wire_bytes": received,
        "payload_bytes": received,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_samples": [],
    }


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send(int(sys.argv[2]), int(sys.argv[3]))
    else:
        print(json.dumps(recv(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))), flush=True)
