#!/usr/bin/env python3
"""The server's side of an Arrow transfer: CPU seconds per call, and wall time per call.

For each BINARY given, starts `BINARY serve` on an ephemeral loopback port, encodes the
arrow bench's 10 000 000-row table (bench/arrow_bench.py) once as ten Arrow IPC chunks whose
last row is refused, and sends them through `ComputeStream` ten times after one warm-up call.
Prints the best and median wall time per call and the server's CPU time per call (user +
system, from /proc/PID/stat). The client's encoding is outside the timings, so what is left
is the transfer and the server's work; comparing builds' CPU per call shows the server's cost
where the wall time is bound by the client. Run with the arrow bench's virtualenv:

    target/arrow-bench-venv/bin/python bench/arrow_server_cpu.py OLD/mittari NEW/mittari
"""
import os
import sys
import time
from pathlib import Path

import grpc
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from arrow_bench import CHUNK_ROWS, transactions  # noqa: E402
from arrow_client import Client, ipc  # noqa: E402
from grpc_bench import start_server  # noqa: E402

ROWS = 10_000_000
CALLS = 10


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    table = transactions(ROWS)
    last = pa.array([i == ROWS - 1 for i in range(ROWS)])
    bad = table.set_column(2, "amount", pc.if_else(last, -1.0, table.column("amount")))
    chunks = [ipc(bad.slice(o, CHUNK_ROWS)) for o in range(0, ROWS, CHUNK_ROWS)]
    for binary in sys.argv[1:]:
        server, address = start_server(binary)
        try:
            client = Client(address)

            def transfer():
                try:
                    client.compute_stream("clv", chunks, {"model": "historic"})
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
                    return
                raise AssertionError("the negative amount was accepted")

            transfer()
            before = cpu_seconds(server.pid)
            walls = []
            for _ in range(CALLS):
                started = time.perf_counter()
                transfer()
                walls.append(time.perf_counter() - started)
            cpu = (cpu_seconds(server.pid) - before) / CALLS
            walls.sort()
            print(f"{binary}: wall per call best {walls[0]:.3f} s, median {walls[CALLS // 2]:.3f} s; "
                  f"server CPU per call {cpu:.3f} s", flush=True)
        finally:
            server.kill()


if __name__ == "__main__":
    main()
