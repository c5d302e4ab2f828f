#!/usr/bin/env python3
"""PyTorch eager train step for the models pstrain trains, as a yardstick for
bench/step_bench.cc (BM_Step): forward, backward and Adam (lr 0.01) on a random batch that
stays on the GPU; steps run back to back and the GPU is waited for only at the end of each
timed run, so the time is the throughput of consecutive steps.

FP32 throughout (TF32 off for matmuls and cuDNN), as pstrain's default. Prints one JSON object
per line: {"model", "batch", "step_ms" (median of --repeats runs), "runs_ms", "device"}.
Usage: python3 bench/torch_step.py [--steps 100] [--repeats 5]
"""
import argparse
import json
import statistics
import sys
import time


def build(model, torch):
    nn = torch.nn
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(7 * 7 * 64, 1024), nn.ReLU(), nn.Linear(1024, 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="100,512")
    args = parser.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"torch_step: PyTorch is not installed here ({e})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("torch_step: PyTorch sees no CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    for model_name in ("mlp", "cnn"):
        for batch in (int(b) for b in args.batches.split(",")):
            torch.manual_seed(0)
            model = build(model_name, torch).to(dev)
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
            loss_fn = torch.nn.CrossEntropyLoss()
            x = torch.rand(batch, 1, 28, 28, device=dev)
            y = torch.randint(0, 10, (batch,), device=dev)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

            for _ in range(10):
                step()
            torch.cuda.synchronize()
            runs = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                torch.cuda.synchronize()
                runs.append((time.perf_counter() - t0) * 1000.0 / args.steps)
            print(json.dumps({"model": model_name, "batch": batch,
                              "step_ms": statistics.median(runs), "runs_ms": runs,
                              "device": torch.cuda.get_device_name(0),
                              "torch": torch.__version__}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
