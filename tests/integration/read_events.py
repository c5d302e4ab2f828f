"""Reads a TensorBoard log directory with TensorBoard's own EventAccumulator and prints what it
found as one JSON object: {"scalars": {tag: [[step, value], ...]},
"histograms": {tag: [[step, num, min, max, sum, bucket_total], ...]}, "events": n}.
Used by tests/integration/tensorboard_test.cc; exits 3 when tensorboard is not installed."""
import json
import sys

try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
except ImportError as e:
    print(f"tensorboard is not installed in this Python ({sys.executable}): {e}", file=sys.stderr)
    sys.exit(3)

acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "histograms": 0})
acc.Reload()
tags = acc.Tags()
out = {"scalars": {}, "histograms": {}}
for tag in tags["scalars"]:
    out["scalars"][tag] = [[e.step, e.value] for e in acc.Scalars(tag)]
for tag in tags["histograms"]:
    out["histograms"][tag] = [
        [e.step, e.histogram_value.num, e.histogram_value.min, e.histogram_value.max,
         e.histogram_value.sum, sum(e.histogram_value.bucket)]
        for e in acc.Histograms(tag)
    ]
print(json.dumps(out))
