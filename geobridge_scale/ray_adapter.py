"""The one module that imports Ray (pinned in requirements-scale.txt): connecting to a cluster
and running the read -> encode pipeline on Ray Data. Ray's API moves between releases; a new
release should need changes here only.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from geobridge_qgis.core.errors import UserError

from .stages import EncodeBlock, ReadBlock

log_ = logging.getLogger(__name__)


@dataclass
class Cluster:
    address: str  # what was connected to ("local" for a Ray started here)
    cpus: float
    gpus: float
    started_here: bool

    def words(self) -> str:
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"Ray {self.address} ({self.cpus:g} CPU{gpu})"


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with one line: ray.init retries an unreachable address for a minute."""
    host_port = address.split("://", 1)[-1]
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--ray-address {address}: expected HOST:PORT (or ray://HOST:PORT)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"--ray-address {address}: no Ray cluster answers there ({e})") from None


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
) -> Cluster:
    """Join the cluster at `address`, or start a local Ray on this machine (no address)."""
    import ray

    if ray.is_initialized():  # a caller (a test, a notebook) already joined one
        started = False
    else:
        if address:
            _check_reachable(address)
        kwargs: dict[str, Any] = dict(
            include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
        )
        if address:
            # Workers on other machines need the engine's code: Ray ships both packages (under
            # a megabyte). The bundle and the raster must be at the same path (or URL) there.
            import geobridge_qgis
            import geobridge_scale

            kwargs["runtime_env"] = {
                "py_modules": [geobridge_qgis, geobridge_scale],
                "excludes": ["__pycache__", "*.pyc"],
            }
        else:
            kwargs.update(num_cpus=num_cpus, object_store_memory=object_store_memory)
        try:
            ray.init(address=address or "local", **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = address or "a local Ray"
            raise UserError(f"--ray-address {where}: cannot join ({_first_line(e)})") from None
        started = True
    # Ray Data logs each execution's start and end (and that its bars are off) and resets its
    # loggers per dataset from this variable; the build reports per block itself.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")
    res = ray.cluster_resources()
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the build reports its own progress, per block
    ctx.print_on_execution_start = False
    return Cluster(address or "local", res.get("CPU", 0.0), res.get("GPU", 0.0), started)


def shutdown(cluster: Cluster) -> None:
    import ray

    if cluster.started_here and ray.is_initialized():
        ray.shutdown()


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _bound(cls: type, kwargs: dict) -> type:
    """`cls` with its constructor arguments built in: they travel with the class, not as
    objects in the store that an actor restart could find gone."""

    class Bound(cls):
        def __init__(self):
            super().__init__(**kwargs)

    Bound.__name__ = Bound.__qualname__ = cls.__name__
    return Bound


def run_blocks(
    cluster: Cluster,
    manifest: pa.Table,
    read_kwargs: dict,
    encode_kwargs: dict,
    read_actors: int = 1,
    encode_actors: int | None = None,
) -> Iterator[dict]:
    """Read and encode the manifest's blocks; yields {"block", "chips" (read), "planned",
    "device"} per block written, as blocks finish (streaming: reading runs ahead of encoding,
    bounded by the read pool and Ray Data's backpressure)."""
    import ray

    gpus = int(cluster.gpus)
    if encode_actors is None:
        encode_actors = gpus or 1
    encode_remote: dict[str, Any] = {"num_gpus": 1} if gpus else {"num_cpus": 1}
    if not gpus:
        encode_kwargs = {**encode_kwargs, "providers": ["CPUExecutionProvider"]}
    ds = ray.data.from_arrow(manifest)
    ds = ds.map_batches(
        _bound(ReadBlock, read_kwargs),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=read_actors),
        # Half a CPU each: readers wait on I/O, and encoders must still find a whole CPU.
        num_cpus=0.5,
    )
    ds = ds.map_batches(
        _bound(EncodeBlock, encode_kwargs),
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=encode_actors),
        **encode_remote,
    )
    # One block at a time, no prefetch: progress and cancellation follow the blocks written
    # (iter_rows would wait for a batch of 256 rows).
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=0):
        for i in range(len(batch["block"])):
            yield {k: batch[k][i] for k in ("block", "chips", "planned", "device")}


def map_tasks(fn: Any, items: list[tuple], num_cpus: float = 1) -> list:
    """fn(*item) for every item as Ray tasks, spread over the cluster; results in order."""
    import ray

    remote = ray.remote(num_cpus=num_cpus)(fn)
    return ray.get([remote.remote(*item) for item in items])
