"""Render 64-frame 512x512 GIFs through the sandbox at concurrency 1 and 2 and print what it achieved.

Every job runs in a fresh process with its memory budget, as in the renderer service; seeds, palettes and
shapes vary from job to job. Figures per level: jobs/min, render time in the child and the whole job
(process start and the trip home included) at p50 / p99, the job process's peak RSS (interpreter
included) and the GIF's size.

    .venv/bin/python bench/render.py [--jobs 16] [--frames 64] [--size 512] [--levels 1 2]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from itertools import cycle
from pathlib import Path
from typing import get_args

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.renderer.sandbox import RenderResult, Sandbox  # noqa: E402
from shared.render_settings import PaletteName, RenderSettings, ShapeName  # noqa: E402

MIB = 1 << 20


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def jobs_for(count: int, frames: int, size: int) -> list[RenderSettings]:
    palettes, shapes = cycle(get_args(PaletteName)), cycle(get_args(ShapeName))
    return [
        RenderSettings(
            name=f"bench {seed}",
            palette=next(palettes),
            shape=next(shapes),
            seed=seed,
            frames=frames,
            size=size,
        )
        for seed in range(count)
    ]


async def run_level(
    concurrency: int, jobs: list[RenderSettings]
) -> tuple[float, list[float], list[RenderResult]]:
    sandbox = Sandbox(concurrency=concurrency)
    try:
        await sandbox.render(jobs[0])  # starts the forkserver, if this is the first level
        semaphore = asyncio.Semaphore(concurrency)
        job_seconds: list[float] = []

        async def one(settings: RenderSettings) -> RenderResult:
            async with semaphore:
                started = time.perf_counter()
                result = await sandbox.render(settings)
                job_seconds.append(time.perf_counter() - started)
                return result

        started = time.perf_counter()
        results = await asyncio.gather(*(one(settings) for settings in jobs))
        return time.perf_counter() - started, job_seconds, results
    finally:
        await sandbox.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    jobs = jobs_for(args.jobs, args.frames, args.size)
    print(
        f"{args.jobs} jobs per level, {args.frames} frames of {args.size}x{args.size}, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'concurrency':>11}  {'jobs/min':>8}  {'render p50/p99 s':>16}  {'job p50/p99 s':>13}"
        f"  {'peak RSS median/max MiB':>23}  {'budget MiB':>10}  {'GIF median/max KiB':>18}"
    )
    print(header)
    for concurrency in args.levels:
        elapsed, job_seconds, results = await run_level(concurrency, jobs)
        render_seconds = [result.seconds for result in results]
        peaks = [result.peak_rss_bytes / MIB for result in results]
        sizes = [len(result.gif) / 1024 for result in results]
        print(
            f"{concurrency:>11}  {len(results) / elapsed * 60:>8.0f}"
            f"  {percentile(render_seconds, 0.5):>7.2f} / {percentile(render_seconds, 0.99):>6.2f}"
            f"  {percentile(job_seconds, 0.5):>5.2f} / {percentile(job_seconds, 0.99):>5.2f}"
            f"  {statistics.median(peaks):>13.1f} / {max(peaks):>7.1f}"
            f"  {results[0].budget_bytes / MIB:>10.0f}"
            f"  {statistics.median(sizes):>8.0f} / {max(sizes):>7.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
