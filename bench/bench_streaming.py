"""Streaming pipeline (core.data.streaming) at scale: images/s and peak memory for N = 1k, 5k, 20k real images.

The folders are built under a temporary directory from the shipped Kaggle images (train + test, 5,840 real
chest X-rays), hard-linked (copied if links are impossible) under distinct names until N files exist. Each N
runs in a fresh subprocess that streams one full epoch (training settings: shuffled, oversampled positives,
128 px grey, batch 64) and reports its throughput and its peak resident memory (ru_maxrss), so the runs
do not share a heap. Goal: flat memory (peak RSS ratio 20k/1k near 1) and linear time (images/s constant).
Caveat: the larger folders re-read the same 5,840 inodes, so after the first pass they come from the page
cache and short runs pay a fixed tf.data warm-up: images/s rises with N here. On a cold 45 GB NIH copy the
pipeline is bound by disk reads; the memory result is what this measures.

    python -m bench streaming          # writes bench/results/streaming.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.results_io import write_results

SIZES = (1_000, 5_000, 20_000)
IMG_SIZE, CHANNELS, BATCH = 128, 1, 64
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = PROJECT_ROOT / "data" / "chest_xray"

CHILD = """
import json, resource, sys, time
import pandas as pd
from core.data import streaming
frame = pd.read_csv(sys.argv[1])
dataset = streaming.make_streaming_dataset(frame, img_size={size}, channels={channels}, batch_size={batch},
                                           shuffle=True, balance="oversample", seed=0)
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, images = time.perf_counter(), 0
for x, y in dataset:
    images += int(x.shape[0])
seconds = time.perf_counter() - start
print("RESULT " + json.dumps({{"images": images, "seconds": seconds, "images_per_s": images / seconds,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rss_after_setup_mb": rss_before / 1024}}))
""".format(size=IMG_SIZE, channels=CHANNELS, batch=BATCH)


def build_folder(target: Path, n: int) -> Path:
    """A CSV of n real images (path, label) under ``target``: the shipped files hard-linked under distinct names."""
    sources = [(p, int(p.parent.name == "PNEUMONIA")) for p in sorted(DATA_ROOT.glob("*/*/*.jpeg"))]
    rows = []
    for i in range(n):
        source, label = sources[i % len(sources)]
        destination = target / ("PNEUMONIA" if label else "NORMAL") / f"copy{i // len(sources)}_{source.name}"
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copyfile(source, destination)
        rows.append(f"{destination},{label}")
    index = target / "index.csv"
    index.write_text("path,label\n" + "\n".join(rows) + "\n")
    return index


def run_one(index: Path) -> dict:
    """Stream one epoch of the folder in a fresh interpreter; its throughput and peak RSS."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(PROJECT_ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD, str(index)], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=1800, check=True).stdout
    return json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))


def main() -> None:
    """Measure every N, print the ratios against the smallest N, write bench/results/streaming.json."""
    results: dict = {"settings": {"img_size": IMG_SIZE, "channels": CHANNELS, "batch": BATCH, "balance": "oversample",
                                  "source": "shipped Kaggle images, hard-linked under distinct names"}, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        for n in SIZES:
            run = run_one(build_folder(Path(tmp) / f"n{n}", n))
            run["n_files"] = n
            results["runs"][str(n)] = run
            print(f"N={n:>6}: {run['images']} images streamed in {run['seconds']:.1f} s = {run['images_per_s']:.0f} images/s, "
                  f"peak RSS {run['peak_rss_mb']:.0f} MB (after setup {run['rss_after_setup_mb']:.0f} MB)", flush=True)
    base = results["runs"][str(SIZES[0])]
    for n in SIZES[1:]:
        run = results["runs"][str(n)]
        ratios = {
            "files": n / SIZES[0],
            "time": run["seconds"] / base["seconds"],
            "images_per_s": run["images_per_s"] / base["images_per_s"],
            "peak_rss": run["peak_rss_mb"] / base["peak_rss_mb"],
        }
        results[f"ratios_{n}_vs_{SIZES[0]}"] = ratios
        print(f"{n} vs {SIZES[0]} files: x{ratios['files']:.0f} files -> time x{ratios['time']:.1f}, "
              f"throughput x{ratios['images_per_s']:.2f}, peak memory x{ratios['peak_rss']:.2f}", flush=True)
    print(f"wrote {write_results('streaming', results)}")


if __name__ == "__main__":
    main()
