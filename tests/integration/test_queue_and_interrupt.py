"""Many clips in a row without memory growth, and a stop request that lands within one sampling step."""

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


def test_interrupt_stops_the_sampler_within_one_step(comfy, default_spec):
    # A large frame makes each step long (~0.1 s on an idle 2-core CPU) next to the event latency, so "one step" is
    # measurable; it is never decoded, since the run stops while sampling.
    steps = 1000
    longest = max(default_spec.durations, key=lambda p: p.frames).name
    prompt = variant(api_workflow("jointav_default_text_to_av"), seed=77, prefix="it_interrupt/clip",
                     JointAVSampler={"steps": steps},
                     JointAVEmptyLatent={"width": 384, "height": 384, "duration": longest})
    sampler = node_id_of(prompt, "JointAVSampler")
    assert inputs_of(prompt, "JointAVSampler")["steps"] == steps
    stream = EventStream(comfy)
    try:
        status, reply = comfy.submit(prompt)
        assert status == 200, reply
        prompt_id = reply["prompt_id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # let a few steps run so the sampler is mid-loop
            done = [d["value"] for _, d in stream.of("progress", prompt_id) if d.get("node") == sampler]
            if done and max(done) >= 3:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the sampler reported no progress within 120 s")
        seen = max(done)
        asked = time.monotonic()
        status, _ = comfy.post("/interrupt")
        assert status == 200
        entry = comfy.wait(prompt_id, timeout=120)
        stopped = time.monotonic() - asked
        interrupted = status_message(entry, "execution_interrupted")
        assert interrupted is not None, f"not reported as interrupted: {json.dumps(entry['status'])[:2000]}"
        assert interrupted["node_id"] == sampler and interrupted["node_type"] == "JointAVSampler"
        time.sleep(0.5)  # late progress events still in flight
        values = [d["value"] for _, d in stream.of("progress", prompt_id) if d.get("node") == sampler]
        step_times = [t for t, d in stream.of("progress", prompt_id) if d.get("node") == sampler]
        per_step = (step_times[-1] - step_times[0]) / max(1, len(step_times) - 1)
        print(f"interrupt: asked after step {seen}, last step reported {max(values)} of {steps}, "
              f"stopped {stopped:.2f} s after the request ({per_step:.3f} s per step)")
        assert max(values) <= seen + 1, f"the sampler went on from step {seen} to {max(values)}"
        assert max(values) < steps
    finally:
        stream.close()
    # the server is still serving
    entry = comfy.run(variant(api_workflow("jointav_default_text_to_av"), seed=78, prefix="it_interrupt/after"))
    assert entry["status"]["status_str"] == "success"
