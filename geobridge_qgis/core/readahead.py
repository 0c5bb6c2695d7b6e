"""Produce items in a background thread, a bounded number ahead of the consumer.

An index build reads chips from GDAL (decoding, warping, resampling) and encodes them with
onnxruntime. Done one after the other, the encoder waits while the raster is read and the
reader waits while the encoder runs. Here the reader runs in its own thread a few batches
ahead: GDAL's reads and onnxruntime's runs release the GIL, so both cores work at once, and
the bounded queue keeps memory flat however large the region is.

An exception in the producer is raised in the consumer, unchanged, when it reaches the item
that failed; closing (explicitly or by leaving the `with` block) stops the producer and waits
for it, so nothing reads a dataset after its owner has moved on.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _ERROR, _END = range(3)
_POLL_S = 0.1  # how often a producer blocked on a full queue checks for close()


class ReadAhead(Generic[T]):
    """Iterate `items` in a thread; the consumer iterates this object."""

    def __init__(self, items: Iterable[T], depth: int = 2, name: str = "geobridge-reader"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, args=(items,), name=name, daemon=True)
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, items: Iterable[T]) -> None:
        it = iter(items)
        try:
            for item in it:
                if not self._put((_ITEM, item)):
                    return
        except BaseException as e:  # handed to the consumer, who decides what it means
            self._put((_ERROR, e))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's own cleanup runs in the thread that ran it
        self._put((_END, None))

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self) -> None:
        """Stop the producer and wait for it (it finishes the item it is reading)."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):  # unblocks a producer waiting on a full queue
                self._queue.get(timeout=_POLL_S)
        self._thread.join()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
