"""The summary of bench/overlap.sh and bench/overlap_link.sh: medians of the --overlap and
--nooverlap runs, their ratio, a table on stdout and the JSON file (written whole: a temporary
file, then renamed).

    python3 bench/overlap_summary.py OUT.json BENCHMARK LABEL "ON ..." "OFF ..." [key=value ...]

ON and OFF are the runs' examples/s, space-separated; each key=value goes into the JSON (a
number where it reads as one).
"""
import datetime
import json
import os
import statistics
import sys


def main(argv):
    out, benchmark, label, on_arg, off_arg = argv[1:6]
    on = [float(x) for x in on_arg.split()]
    off = [float(x) for x in off_arg.split()]
    res = {"benchmark": benchmark,
           "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
    for item in argv[6:]:
        key, _, value = item.partition("=")
        try:
            res[key] = int(value)
        except ValueError:
            res[key] = value
    res.update({"overlap_examples_per_second": on, "nooverlap_examples_per_second": off,
                "overlap_median": statistics.median(on),
                "nooverlap_median": statistics.median(off)})
    res["ratio"] = res["overlap_median"] / res["nooverlap_median"]
    print(f"{'job':16} {'--overlap':>10} {'--nooverlap':>12} {'ratio':>6}  "
          f"(examples/s, medians of {len(on)} interleaved runs)")
    print(f"{label:16} {res['overlap_median']:10.0f} {res['nooverlap_median']:12.0f} "
          f"{res['ratio']:6.3f}")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)
    print("results:", out)


if __name__ == "__main__":
    main(sys.argv)
