"""Many clips in a row without memory growth, and a stop request that lands within seconds, inside a forward."""

from __future__ import annotations

import json
import time

from .comfy_server import EventStream, saved_files, status_message
from .workflows import api_workflow, inputs_of, node_id_of, variant

QUEUE_LENGTH = 10
RSS_GROWTH_BOUND_MB = 150.0  # resident memory after prompt 10 minus after prompt 2


def test_ten_prompts_in_a_row_do_not_grow_memory(comfy):
    base = api_workflow("jointav_default_text_to_av")
    rss_mb = []
    for i in range(QUEUE_LENGTH):
        entry = comfy.run(variant(base, seed=500 + i, prefix="it_queue/clip"))
        assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
        assert len(saved_files(entry, comfy.base)) == 1
        rss_mb.append(comfy.rss_bytes() / 2**20)
    growth = rss_mb[-1] - rss_mb[1]
    print(f"server VmRSS per prompt (MB): {', '.join(f'{r:.0f}' for r in rss_mb)}; "
          f"after prompt 10 - after prompt 2 = {growth:+.1f} MB (bound {RSS_GROWTH_BOUND_MB:.0f} MB)")
    assert growth < RSS_GROWTH_BOUND_MB
    written = list((comfy.base / "output" / "it_queue").glob("clip_*.mp4"))
    assert len(written) >= QUEUE_LENGTH


STOP_BOUND_S = 5.0  # the bound, printed beside the figure; not asserted, since seconds follow machine load


def test_an_interrupt_during_a_large_forward_stops_it_within_seconds(comfy, default_spec):
    """The largest frame and clip the default model takes, 64 side by side: one sampling step is several
    forwards of many seconds each. The stop request is sent right after step 1, when a whole step lies ahead,
    so only a check inside the forward (before each DiT block) can end the run in time; the next prompt runs."""
    steps = 1000
    longest = max(default_spec.durations, key=lambda p: p.frames).name
    height, width = max(default_spec.resolutions, key=lambda hw: hw[0] * hw[1])
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=77, prefix="it_interrupt/clip",
                     JointAVSampler={"steps": steps},
                     JointAVEmptyLatent={"width": width, "height": height, "duration": longest, "batch": 64})
    sampler = node_id_of(prompt, "JointAVSampler")
    stream = EventStream(comfy)
    try:
        status, reply = comfy.submit(prompt)
        assert status == 200, reply
        prompt_id = reply["prompt_id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # the first step done: the second has just begun
            done = [d["value"] for _, d in stream.of("progress", prompt_id) if d.get("node") == sampler]
            if done:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the sampler reported no progress within 300 s")
        asked = time.monotonic()
        status, _ = comfy.post("/interrupt")
        assert status == 200
        entry = comfy.wait(prompt_id, timeout=300)
        stopped = time.monotonic() - asked
        interrupted = status_message(entry, "execution_interrupted")
        assert interrupted is not None, f"not reported as interrupted: {json.dumps(entry['status'])[:2000]}"
        assert interrupted["node_id"] == sampler and interrupted["node_type"] == "JointAVSampler"
        started = [t for t, d in stream.of("executing", prompt_id) if d.get("node") == sampler]
        first_step = [t for t, d in stream.of("progress", prompt_id) if d.get("node") == sampler][0]
        step_s = first_step - started[0] if started else float("nan")
        print(f"interrupt: {width}x{height}, {longest}, batch 64: the first step took {step_s:.1f} s; stopped "
              f"{stopped:.2f} s after the request (bound {STOP_BOUND_S:.0f} s)")
        values = [d["value"] for _, d in stream.of("progress", prompt_id) if d.get("node") == sampler]
        assert max(values) == 1, f"the sampler went on to step {max(values)}"
        # Asserted as a ratio of two times measured on the same machine in the same run, so load slows both:
        # a stop checked only between steps waits out the step just begun (measured: 19.9 s of an 18.1 s step).
        assert stopped < step_s / 2, (f"stopped {stopped:.1f} s after the request while a step takes {step_s:.1f} s: "
                                      f"this size does not test a stop inside a forward")
    finally:
        stream.close()
    # the server is still serving
    entry = comfy.run(variant(api_workflow("jointav_default_text_to_av"), seed=78, prefix="it_interrupt/after"))
    assert entry["status"]["status_str"] == "success"
