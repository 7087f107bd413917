#!/usr/bin/env python3
"""The loopback floor under an Arrow upload: how fast this machine moves BYTES (default the
290 000 504 bytes of bench/arrow_bench.py's table) through a TCP socket on 127.0.0.1, one
process sending and another receiving into a buffer it reuses, and how fast it copies them
once in memory (into a reused buffer, and into fresh memory). Best of REPEAT (default 5).
Standard library only. Prints one JSON object per measurement.

    python3 bench/loopback_floor.py [BYTES] [REPEAT]
"""
import json
import multiprocessing
import socket
import sys
import time


def receive(port, size, repeat, ready):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1)
    ready.set()
    connection, _ = listener.accept()
    buffer = bytearray(size)
    view = memoryview(buffer)
    for _ in range(repeat):
        got = 0
        while got < size:
            n = connection.recv_into(view[got:], size - got)
            if n == 0:
                return
            got += n
        connection.sendall(b"k")


def main():
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 290_000_504
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    ready = multiprocessing.Event()
    receiver = multiprocessing.Process(target=receive, args=(port, size, repeat, ready))
    receiver.start()
    ready.wait()
    payload = bytes(size)
    sender = socket.create_connection(("127.0.0.1", port))
    best = None
    for _ in range(repeat):
        started = time.perf_counter()
        sender.sendall(payload)
        sender.recv(1)
        elapsed = time.perf_counter() - started
        best = elapsed if best is None else min(best, elapsed)
    receiver.join()
    print(json.dumps({"measure": "loopback_tcp", "bytes": size, "seconds": round(best, 4), "MB_per_s": round(size / best / 1e6)}))

    reused = bytearray(size)
    best_reused = best_fresh = None
    for _ in range(repeat):
        started = time.perf_counter()
        reused[:] = payload
        elapsed = time.perf_counter() - started
        best_reused = elapsed if best_reused is None else min(best_reused, elapsed)
        started = time.perf_counter()
        fresh = bytearray(payload)
        elapsed = time.perf_counter() - started
        del fresh
        best_fresh = elapsed if best_fresh is None else min(best_fresh, elapsed)
    print(json.dumps({"measure": "copy_into_reused_memory", "bytes": size, "seconds": round(best_reused, 4), "MB_per_s": round(size / best_reused / 1e6)}))
    print(json.dumps({"measure": "copy_into_fresh_memory", "bytes": size, "seconds": round(best_fresh, 4), "MB_per_s": round(size / best_fresh / 1e6)}))


if __name__ == "__main__":
    main()
