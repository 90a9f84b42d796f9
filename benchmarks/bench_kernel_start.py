"""Kernel start of a fresh environment against the server's own python3 kernel, side by side (issue 14).

Kernel start = POST /api/kernels → the first kernel_info_reply on the kernel's websocket. Both kernels
start on the same server, interleaved, so drift in the (shared, loaded) machine hits both alike. The
environment is built through the REST API, so its bytecode was compiled at build time; nothing is
compiled when its kernel starts. Target: median ratio envmgr / python3 <= 1.2.

    python benchmarks/bench_kernel_start.py [--runs 7]
"""
import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

from helpers import Server  # noqa: E402  (the tests' real-server helper)


async def kernel_start(server: Server, kernel: str) -> float:
    """Seconds from POST /api/kernels to the first kernel_info_reply; the kernel is shut down after."""
    base, headers = f"http://127.0.0.1:{server.port}", {"Authorization": f"token {server.token}"}
    http = AsyncHTTPClient()
    started = time.perf_counter()
    resp = await http.fetch(HTTPRequest(f"{base}/api/kernels", method="POST", headers=headers,
                                        body=json.dumps({"name": kernel}), request_timeout=120))
    kid = json.loads(resp.body)["id"]
    ws = await websocket_connect(HTTPRequest(f"ws://127.0.0.1:{server.port}/api/kernels/{kid}/channels", headers=headers))
    msg_id = uuid.uuid4().hex
    request = {"header": {"msg_id": msg_id, "username": "bench", "session": uuid.uuid4().hex, "msg_type": "kernel_info_request",
                          "version": "5.3"}, "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"}
    while True:  # a kernel still starting may miss the first request: ask again until it answers
        await ws.write_message(json.dumps(request))
        try:
            reply = await asyncio.wait_for(_reply(ws, msg_id), timeout=0.5)
        except asyncio.TimeoutError:
            continue
        if reply:
            break
    took = time.perf_counter() - started
    ws.close()
    await http.fetch(HTTPRequest(f"{base}/api/kernels/{kid}", method="DELETE", headers=headers))
    return took


async def _reply(ws, msg_id: str) -> bool:
    while True:
        text = await ws.read_message()
        if text is None:
            raise RuntimeError("the kernel's websocket closed")
        msg = json.loads(text)
        if msg.get("msg_type") == "kernel_info_reply" and msg.get("parent_header", {}).get("msg_id") == msg_id:
            return True


async def measure(server: Server, kernels: list, runs: int) -> dict:
    times = {k: [] for k in kernels}
    for k in kernels:  # one warm-up each: the page cache holds both interpreters
        await kernel_start(server, k)
    for _ in range(runs):
        for k in kernels:
            times[k].append(await kernel_start(server, k))
    return times


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="envmgr-bench-kernel-")
    root = os.path.join(base, "root")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    server = Server(os.path.join(base, "server"), root, os.path.join(root, "cache", "uv"), default_python=python)
    try:
        server.client.create({"name": "fresh", "packages": ""})
        for _ in server.client.follow_log("fresh"):
            pass
        assert server.client.get("fresh")["status"] == "ready"
        times = asyncio.run(measure(server, ["envmgr-fresh", "python3"], args.runs))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    env_med, own_med = statistics.median(times["envmgr-fresh"]), statistics.median(times["python3"])
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"kernel start, fresh environment (bytecode from its build): median {env_med:.3f} s over {args.runs} runs")
    print(f"kernel start, the server's own python3 kernel:            median {own_med:.3f} s over {args.runs} runs")
    ratio = env_med / own_med
    print(f"ratio envmgr / python3: {ratio:.2f}  (target <= 1.2): {'OK' if ratio <= 1.2 else 'MISSED'}")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
