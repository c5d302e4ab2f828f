#!/usr/bin/env python3
"""Builds the GPU check's table from the files scripts/gpu-check.sh wrote into one folder.

Usage: python3 scripts/gpu_check_report.py DIR
Reads (each optional; a missing one shows as "n/a"):
  parity.txt        cuda_parity_test output ("PARITY op=... max_rel_err=... tol=...")
  train_parity.txt  cuda_train_parity_test output ("TRAIN_PARITY model=... rel=...")
  train_mlp.json, train_cnn.json    `pstrain train --num_gpus 1 --summary_json` on the GPU
  cpu_reference.json                the same runs on the CPU, measured where the carry was made
  job/summary.json                  `pstrain launch` on the GPU
  step.json         bench/step_bench.cc, Google Benchmark JSON with aggregates
  torch.jsonl       bench/torch_step.py output
Writes report.json beside them and prints the tables.
"""
import json
import os
import re
import sys


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    report = {}

    parity = {}
    try:
        for line in open(os.path.join(d, "parity.txt")):
            m = re.match(r"PARITY op=(\S+) shape=(\S+) max_rel_err=(\S+) tol=(\S+)", line)
            if m:
                op, err, tol = m.group(1), float(m.group(3)), float(m.group(4))
                worst = parity.get(op)
                if worst is None or err > worst[0]:
                    parity[op] = (err, tol, m.group(2))
    except OSError:
        pass
    report["parity"] = {op: {"max_rel_err": e, "tol": t, "worst_shape": s}
                        for op, (e, t, s) in parity.items()}
    print("== Parity, CUDA against the CPU reference (max relative error over all shapes)")
    for op in sorted(parity):
        e, t, s = parity[op]
        print(f"  {op:32s} {e:10.3e}  (tol {t:.1e}) {'ok' if e <= t else 'FAIL'}")
    if not parity:
        print("  n/a (no PARITY lines)")

    train_parity = []
    try:
        for line in open(os.path.join(d, "train_parity.txt")):
            if line.startswith("TRAIN_PARITY"):
                train_parity.append(line.split(None, 1)[1].strip())
    except OSError:
        pass
    report["train_parity"] = train_parity
    print("== Training steps, GPU losses against the CPU run (tolerance 1e-3 relative)")
    for line in train_parity or ["n/a"]:
        print("  " + line)

    cpu_ref = load_json(os.path.join(d, "cpu_reference.json")) or {}
    print("== Test accuracy after training (Fashion-MNIST)")
    print(f"  {'run':34s} {'GPU acc':>8s} {'GPU s':>7s} {'CPU acc':>8s} {'CPU s':>7s}")
    accuracy = {}
    for name in ("mlp", "cnn"):
        g = load_json(os.path.join(d, f"train_{name}.json"))
        c = cpu_ref.get(name)
        row = {"gpu": g, "cpu": c}
        accuracy[name] = row

        def fmt(r, key, spec):
            return format(r[key], spec) if r and key in r else "n/a"
        steps = g["steps"] if g else (c["steps"] if c else "?")
        print(f"  {'pstrain train ' + name + ' ' + str(steps) + ' steps':34s} "
              f"{fmt(g, 'test_accuracy', '8.4f'):>8s} {fmt(g, 'train_seconds', '7.1f'):>7s} "
              f"{fmt(c, 'test_accuracy', '8.4f'):>8s} {fmt(c, 'train_seconds', '7.1f'):>7s}")
    job = load_json(os.path.join(d, "job", "summary.json"))
    if job:
        print(f"  launch 1 ps + 2 workers (GPU, sync): state {job.get('state')}, "
              f"accuracy {job.get('test_accuracy')}, "
              f"{job.get('examples_per_second', 0):.0f} examples/s")
    report["accuracy"] = accuracy
    report["launch"] = job

    steps = {}
    bench = load_json(os.path.join(d, "step.json")) or {}
    for b in bench.get("benchmarks", []):
        m = re.match(r"BM_Step/(\w+)/batch:(\d+)/gpu:1/real_time", b.get("run_name", b["name"]))
        if m and b.get("aggregate_name") == "median":
            unit = {"ms": 1.0, "us": 1e-3, "ns": 1e-6, "s": 1e3}[b.get("time_unit", "ms")]
            steps[(m.group(1), int(m.group(2)))] = {"pstrain_ms": b["real_time"] * unit / 10}
    try:
        for line in open(os.path.join(d, "torch.jsonl")):
            r = json.loads(line)
            steps.setdefault((r["model"], r["batch"]), {})["torch_ms"] = r["step_ms"]
    except (OSError, ValueError):
        pass
    print("== Train step on the GPU (forward + backward + Adam), median ms per step")
    print(f"  {'model':6s} {'batch':>5s} {'pstrain':>9s} {'PyTorch':>9s} {'ratio':>7s}")
    for (model, batch) in sorted(steps):
        r = steps[(model, batch)]
        p, t = r.get("pstrain_ms"), r.get("torch_ms")
        ratio = f"{t / p:6.2f}x" if p and t else "n/a"
        print(f"  {model:6s} {batch:5d} {p if p is None else f'{p:9.3f}':>9} "
              f"{t if t is None else f'{t:9.3f}':>9} {ratio:>7s}")
    report["step"] = {f"{m}/{b}": v for (m, b), v in steps.items()}
    print("  (ratio = PyTorch time / pstrain time; above 1 means pstrain is faster)")
    with open(os.path.join(d, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
