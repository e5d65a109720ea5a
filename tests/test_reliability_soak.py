"""Soak: many queued MicroCinema prompts of varying sizes through a real ComfyUI server on 127.0.0.1. Zero failures,
every prompt's frames come back, and the server's resident memory after the run stays within 10% of what it was
after the first five prompts (no per-prompt leak). A cheap 10-prompt variant runs by default; the 50-prompt one is
marked slow."""
from __future__ import annotations

import time

import pytest

from harness.reliability import rss_bytes, video_graph
from harness.reliability_fixtures import *  # noqa: F401,F403  (fixtures)

pytestmark = [pytest.mark.reliability, pytest.mark.server]

# (width, height, length, keyframes): sizes vary from prompt to prompt, so nothing is served from the cache
SHAPES = [(16, 16, 1, 1), (24, 16, 2, 1), (32, 24, 3, 1), (16, 32, 2, 2), (24, 24, 4, 1), (32, 32, 2, 2),
          (16, 24, 3, 1)]
WARM_UP = 5
GROWTH_LIMIT = 1.10


def soak_prompt(ckpt: str, i: int) -> tuple[dict, int]:
    width, height, length, keyframes = SHAPES[i % len(SHAPES)]
    g, refs = video_graph(ckpt, seed=10_000 + i, steps=1 + i % 2, width=width, height=height, length=length,
                          output="preview", keyframe_position=("center", "first", "last")[i % 3],
                          appearance_strength=(1.0, 0.5, 0.0)[i % 3], noise_prior_gamma=(0.02, 0.0, 0.05)[i % 3])
    refs["image"].set(width=8 + 7 * (i % 5), height=40 - 5 * (i % 4), batch_size=keyframes, color=(i * 2654435) % 2**24)
    return g.to_api(), keyframes * length


def wait_all(server, prompt_ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict] = {}
    while len(done) < len(prompt_ids):
        for prompt_id in prompt_ids:
            if prompt_id not in done:
                entry = server.history(prompt_id)
                if entry.get("status", {}).get("completed") is not None:
                    done[prompt_id] = entry
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(prompt_ids) - len(done)} prompts unfinished after {timeout:.0f} s:\n"
                               f"{server.log_tail(3000)}")
        time.sleep(0.5)
    return done


def soak(server, ckpt: str, total: int, tally) -> None:
    prompts = [soak_prompt(ckpt, i) for i in range(total)]
    started = time.perf_counter()
    ids_first = [server.queue_prompt(p) for p, _ in prompts[:WARM_UP]]
    history = wait_all(server, ids_first, timeout=600)
    rss_warm = rss_bytes(server.process.pid)
    ids_rest = [server.queue_prompt(p) for p, _ in prompts[WARM_UP:]]  # all queued at once
    history.update(wait_all(server, ids_rest, timeout=60 * total))
    rss_end = rss_bytes(server.process.pid)
    seconds = time.perf_counter() - started
    tally.add("prompts", total)
    tally.time(f"soak {total} prompts", seconds)
    failures = []
    for (prompt, frames), prompt_id in zip(prompts, ids_first + ids_rest):
        entry = history[prompt_id]
        status = entry.get("status", {})
        images = [img for out in entry.get("outputs", {}).values() for img in out.get("images", [])]
        if status.get("status_str") != "success" or len(images) != frames:
            failures.append((prompt_id, status.get("status_str"), len(images), frames,
                             [m for m in status.get("messages", []) if m[0] == "execution_error"]))
    tally.add("failures", len(failures))
    growth = rss_end / rss_warm
    summary = (f"{total} prompts in {seconds:.0f} s ({seconds / total:.1f} s/prompt), failures {len(failures)}, "
               f"RSS after {WARM_UP}: {rss_warm / 2**20:.0f} MiB, after {total}: {rss_end / 2**20:.0f} MiB "
               f"(x{growth:.3f})")
    print("soak:", summary)
    tally.note(f"soak {total}", summary)
    assert failures == [], failures
    assert growth <= GROWTH_LIMIT, f"RSS grew from {rss_warm / 2**20:.0f} to {rss_end / 2**20:.0f} MiB"
    status, queue = server.request("GET", "/queue")
    assert status == 200 and not queue["queue_running"] and not queue["queue_pending"]


def test_soak_10_prompts(comfy_server, tiny_sd_checkpoint, tally):
    soak(comfy_server, tiny_sd_checkpoint, 10, tally)


@pytest.mark.slow
def test_soak_50_prompts(comfy_server, tiny_sd_checkpoint, tally):
    soak(comfy_server, tiny_sd_checkpoint, 50, tally)
