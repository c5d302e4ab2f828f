"""The summary of bench/goals.sh: each goal's target, the median of what was measured and
whether it was met, as a table on stdout and as JSON (written whole: a temporary file, then
renamed).

    python3 bench/goals_summary.py OUT.json WORK_DIR ROUNDS STEPS [FORMAT:SEED:ACCURACY ...]

WORK_DIR holds goals.sh's runs: ps-<round>.json (Google Benchmark's JSON of pstrain_bench_ps)
and e2e.json (bench/e2e_ratio.sh's result). GB/s are 10^9 bytes per second, as Google
Benchmark's bytes_per_second counts them.
"""
import datetime
import json
import os
import statistics
import sys

TCP = "BM_PushPullReplyParts/KB:{kb}/parts:1/real_time"
ECHO = "BM_RawZmq/KB:{kb}/curve:0/ipc:0/conns:1/real_time"
SHM = "BM_PushPullMerged/KB:40000/chunks:0/curve:0/process:1/via:3/real_time"
MEMCPY = "BM_Memcpy/MB:40"


def series(work, rounds):
    """Every benchmark's GB/s, one entry per round; the first round's context."""
    per_name, context = {}, None
    for r in range(1, rounds + 1):
        with open(os.path.join(work, f"ps-{r}.json")) as f:
            doc = json.load(f)
        context = context or doc.get("context", {})
        for b in doc["benchmarks"]:
            if "error_message" in b:
                raise SystemExit(f"goals: {b['name']} failed: {b['error_message']}")
            per_name.setdefault(b["name"], []).append(b["bytes_per_second"] / 1e9)
    return per_name, context


def need(per_name, name):
    if name not in per_name:
        raise SystemExit(f"goals: pstrain_bench_ps did not run {name} (a renamed series?)")
    return per_name[name]


def main(argv):
    out, work, rounds, steps = argv[1], argv[2], int(argv[3]), int(argv[4])
    per_name, context = series(work, rounds)
    goals = []

    def goal(number, what, target, measured, met, beside, **extra):
        goals.append({"goal": number, "what": what, "target": target,
                      "measured": measured, "met": met, "beside": beside, **extra})

    for kb, target in ((318, 1.5), (4000, 2.5), (40000, 2.5)):
        runs = need(per_name, TCP.format(kb=kb))
        echo = need(per_name, ECHO.format(kb=kb))
        m = statistics.median(runs)
        goal(1, f"push + pull over loopback TCP, {kb} KB (GB/s)", target, m, m >= target,
             f"raw ZeroMQ echo {statistics.median(echo):.2f} GB/s", rounds=runs,
             raw_zeromq_echo=echo)
    shm = need(per_name, SHM)
    memcpy = need(per_name, MEMCPY)
    ratio = statistics.median(shm) / statistics.median(memcpy)
    goal(2, "push + pull via shared memory, 40 MB / memcpy (x)", 0.6, ratio,
         ratio >= 0.6, f"{statistics.median(shm):.2f} / {statistics.median(memcpy):.2f} GB/s",
         shm_gb_per_s=shm, memcpy_gb_per_s=memcpy)

    with open(os.path.join(work, "e2e.json")) as f:
        e2e = json.load(f)
    for mode in ("sync", "async"):
        m = e2e["modes"][mode]
        goal(3, f"main job / pstrain train, {mode} (x)", 0.8, m["ratio"], m["ratio"] >= 0.8,
             f"{m['job_median']:,.0f} / {m['train_median']:,.0f} examples/s",
             job_examples_per_second=m["job_examples_per_second"],
             train_examples_per_second=m["train_examples_per_second"])

    acc = {}
    for item in argv[5:]:
        fmt, seed, a = item.split(":")
        acc.setdefault(fmt, {})[int(seed)] = float(a)
    if "none" in acc:
        base = statistics.mean(acc["none"].values())
        for fmt in ("bf16", "fp16"):
            if fmt not in acc:
                continue
            diff = 100 * (statistics.mean(acc[fmt].values()) - base)
            mean = statistics.mean(acc[fmt].values())
            goal(4, f"test accuracy, --compress={fmt} - none (points)", 0.5, diff,
                 abs(diff) <= 0.5, f"{mean:.4f} / {base:.4f}, mean of {len(acc[fmt])} seeds",
                 train_steps=steps, accuracy_by_seed=acc[fmt], float32_by_seed=acc["none"])

    print(f"{'goal':4}  {'what':50} {'target':>9} {'median':>7}  {'met':3}  beside it")
    for g in goals:
        target = ("|x| <= " if g["goal"] == 4 else ">= ") + f"{g['target']}"
        print(f"{g['goal']:4}  {g['what']:50} {target:>9} {g['measured']:7.2f}  "
              f"{'yes' if g['met'] else 'NO':3}  {g['beside']}")
    res = {"benchmark": "goals",
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
           "rounds": rounds, "machine": {k: context.get(k) for k in
                                         ("host_name", "num_cpus", "mhz_per_cpu", "caches", "load_avg")},
           "goals": goals}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)
    print("results:", out)


if __name__ == "__main__":
    main(sys.argv)
