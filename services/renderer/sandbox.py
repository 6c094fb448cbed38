"""Render GIFs off the event loop, each job in a fresh process with an address-space budget.

A fresh process per job (`max_tasks_per_child=1`, forked by a forkserver that has already imported Pillow
and the renderer, so starting one is cheap) means a job's peak RSS is its own, and a leak, a crash or a
blown budget cannot reach the next job.
"""

import asyncio
import logging
import multiprocessing
import os
import resource
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from services.renderer.gif import render_gif
from shared.render_settings import RenderSettings

log = logging.getLogger(__name__)

DEFAULT_MAX_BUDGET_BYTES = 1 << 30
DEFAULT_SAFETY_FACTOR = 1.5
# On top of the estimate: the interpreter's own heap growth and allocator slack, whatever the job's size.
DEFAULT_ALLOWANCE_BYTES = 64 << 20
PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class RenderResult:
    gif: bytes
    frames: int
    seconds: float
    # High-water mark of the job's process, interpreter included (about 35 MiB of it).
    peak_rss_bytes: int
    budget_bytes: int


class RenderFailed(Exception):
    """A render ran out of its memory budget, or its process died.

    `retryable` is False for a blown budget (the same settings will blow it again) and True for a dead
    process: the pool fails every job in flight when one process dies, so the others deserve a retry.
    """

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Sandbox:
    """At most `concurrency` renders at once, more wait in the pool's queue; no job's budget exceeds
    `max_budget_bytes`."""

    def __init__(
        self,
        concurrency: int = 2,
        max_budget_bytes: int = DEFAULT_MAX_BUDGET_BYTES,
        *,
        safety_factor: float = DEFAULT_SAFETY_FACTOR,
        allowance_bytes: int = DEFAULT_ALLOWANCE_BYTES,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self.concurrency = concurrency
        self.max_budget_bytes = max_budget_bytes
        self.safety_factor = safety_factor
        self.allowance_bytes = allowance_bytes
        self._context = multiprocessing.get_context("forkserver")
        # Only takes effect if this process has not started its forkserver yet.
        self._context.set_forkserver_preload(["services.renderer.gif", "services.renderer.sandbox"])
        self._closed = False
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.concurrency,
            mp_context=self._context,
            max_tasks_per_child=1,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )

    def budget_bytes(self, settings: RenderSettings) -> int:
        """Address space a job may add to its process before allocations fail with MemoryError."""
        wanted = int(settings.estimated_memory_bytes() * self.safety_factor) + self.allowance_bytes
        return min(wanted, self.max_budget_bytes)

    async def render(self, settings: RenderSettings) -> RenderResult:
        budget = self.budget_bytes(settings)
        pool = self._pool
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(pool, _render_in_child, settings, budget)
        except MemoryError:
            log.warning(
                "render out of memory: %d frames of %dpx, budget %d bytes",
                settings.frames,
                settings.size,
                budget,
            )
            raise RenderFailed(
                f"{settings.frames} frames of {settings.size}x{settings.size} ran out of the"
                f" {budget} byte memory budget",
                retryable=False,
            ) from None
        except BrokenProcessPool as exc:
            log.warning(
                "render process died: %d frames of %dpx; starting a new pool", settings.frames, settings.size
            )
            self._replace(pool)
            raise RenderFailed(
                "the render process died (killed, crashed or out of memory)", retryable=True
            ) from exc
        log.debug(
            "rendered %d frames of %dpx in %.2f s, peak rss %d bytes, %d byte gif",
            result.frames,
            settings.size,
            result.seconds,
            result.peak_rss_bytes,
            len(result.gif),
        )
        return result

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        # Every job in flight on a broken pool fails; only the first to notice replaces it.
        if self._pool is broken and not self._closed:
            self._pool = self._new_pool()
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let running renders finish, drop queued ones, stop the processes. Safe to call twice."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


def _exit_with_parent(parent_pid: int) -> None:
    """A render process whose service was killed (SIGKILL: no shutdown code ran) would wait forever on
    its task queue, and keep the forkserver alive with it: exit once the service is gone."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _render_in_child(settings: RenderSettings, budget_bytes: int) -> RenderResult:
    _limit_address_space(budget_bytes)
    started = time.perf_counter()
    try:
        gif: bytes | None = render_gif(settings)
    except MemoryError:
        gif = None
    if gif is None:
        # Raised outside the except block so the first error's traceback, which keeps every frame alive,
        # is gone before the pool pickles this one home within the same exhausted budget.
        raise MemoryError(f"render needed more than its {budget_bytes} byte budget")
    return RenderResult(
        gif=gif,
        frames=settings.frames,
        seconds=time.perf_counter() - started,
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,  # Linux reports KiB
        budget_bytes=budget_bytes,
    )


def _limit_address_space(budget_bytes: int) -> None:
    """Cap this process at its current address space plus the budget; the cap dies with the process."""
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[0]) * resource.getpagesize()
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + budget_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
