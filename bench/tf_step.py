#!/usr/bin/env python3
"""TensorFlow CPU train step for the models pstrain trains, as a yardstick for
bench/step_bench.cc (BM_Step, gpu:0): forward, backward and Adam (lr 0.01) in one
tf.function on a random batch, FP32, TensorFlow's own oneDNN kernels (TF_ENABLE_ONEDNN_OPTS,
on by default for x86 builds). Steps run back to back; each timed run is --steps steps.

The models are pstrain's: the MLP (784-100-10) and TensorFlow's layers-tutorial CNN
(conv5x5x32-relu-pool, conv5x5x64-relu-pool, dense 1024-relu, dense 10), as
kernels/model.cc builds them. Prints one JSON object per line: {"framework", "model", "batch",
"threads", "step_ms" (median of --repeats runs), "runs_ms"}.

TensorFlow is not a dependency of pstrain: install it into a venv of its own,
  python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
and run
  /tmp/tfvenv/bin/python bench/tf_step.py --threads 2
interleaved with build/bench/pstrain_bench_step (docs/benchmarks.md).
"""
import argparse
import json
import os
import statistics
import sys
import time


def build(model, tf):
    layers = tf.keras.layers
    if model == "mlp":
        return tf.keras.Sequential([
            layers.Input((28, 28, 1)), layers.Flatten(),
            layers.Dense(100, activation="relu"), layers.Dense(10)])
    return tf.keras.Sequential([
        layers.Input((28, 28, 1)),
        layers.Conv2D(32, 5, padding="same", activation="relu"), layers.MaxPool2D(2),
        layers.Conv2D(64, 5, padding="same", activation="relu"), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dense(1024, activation="relu"), layers.Dense(10)])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="100,512")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        print(f"tf_step: TensorFlow is not installed here ({e}); see --help", file=sys.stderr)
        return 2
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    for model_name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            tf.random.set_seed(0)
            model = build(model_name, tf)
            opt = tf.keras.optimizers.Adam(learning_rate=0.01)
            loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            x = tf.random.uniform((batch, 28, 28, 1))
            y = tf.random.uniform((batch,), maxval=10, dtype=tf.int32)

            @tf.function
            def step():
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            for _ in range(5):  # trace and warm up
                step().numpy()
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for _ in range(args.steps):
                    loss = step()
                loss.numpy()
                runs.append((time.perf_counter() - start) * 1000 / args.steps)
            print(json.dumps({"framework": f"tensorflow {tf.__version__}", "model": model_name,
                              "batch": batch, "threads": args.threads,
                              "step_ms": round(statistics.median(runs), 3),
                              "runs_ms": [round(r, 3) for r in runs]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
