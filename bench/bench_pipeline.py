"""Images/s: core.data.pipeline (tf.data) vs legacy ImageDataGenerator.flow_from_directory feeding the same model.

Keras 3 removed ``ImageDataGenerator``; the legacy one compared here is the original implementation from the
``tf-keras`` package (``tf_keras.preprocessing.image.ImageDataGenerator``, pinned in requirements-dev.txt).
Both feed the same reference CNN (64x64 grey, raw [0, 255] pixels, rescaling inside the model) the same real
training images, with the same augmentation (rotation, zoom, shift) or none, for the same number of epochs,
measured side by side in one run; then each input pipeline alone (batches drawn, no model). The tf.data
pipeline decodes each file once (cache) and augments whole batches in parallel; the legacy generator decodes
and augments image by image, every epoch. With the small 64-px CNN the training step itself bounds the
"feeding the model" ratio on a 2-core CPU; the input-only ratio shows the pipelines' own speeds.

Run: ``python -m bench pipeline`` (writes bench/results/pipeline.json).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.results_io import write_results

IMAGES_PER_CLASS = 384
EPOCHS = 3
IMG_SIZE = 64
BATCH = 32


def _subset(data_root: Path) -> pd.DataFrame:
    """The first IMAGES_PER_CLASS real training images of each class, as index rows."""
    rows = []
    for label, folder in ((0, "NORMAL"), (1, "PNEUMONIA")):
        for path in sorted((data_root / "train" / folder).glob("*.jpeg"))[:IMAGES_PER_CLASS]:
            rows.append({"path": str(path), "relpath": path.relative_to(data_root).as_posix(), "label": label, "split": "train"})
    return pd.DataFrame(rows)


def _mirror_as_directory(frame: pd.DataFrame, folder: Path) -> Path:
    """The subset as class folders of symlinks (the layout flow_from_directory reads)."""
    for _, row in frame.iterrows():
        target = folder / ("NORMAL" if row["label"] == 0 else "PNEUMONIA") / Path(row["path"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(row["path"], target)
    return folder


def _time_epochs(model, data, steps: int) -> list[float]:
    """Seconds for each of EPOCHS training epochs of `steps` batches."""
    import keras

    times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(data, epochs=EPOCHS, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
    return times


def _time_input_only(batches, steps: int) -> list[float]:
    """Seconds for each of EPOCHS passes of `steps` batches drawn from an input pipeline, no model."""
    times = []
    iterator = iter(batches)
    for _ in range(EPOCHS):
        start = time.perf_counter()
        for _ in range(steps):
            x, _y = next(iterator)
            np.asarray(x)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    """Measure both input pipelines with and without augmentation; print images/s and ratios; write results."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from tf_keras.preprocessing.image import ImageDataGenerator

    from core import config
    from core.data import pipeline
    from core.models import zoo

    frame = _subset(config.data_root())
    n = len(frame)
    steps = n // BATCH
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        directory = _mirror_as_directory(frame, Path(tmp))
        for augment in (False, True):
            label = "augmented" if augment else "plain"
            legacy = ImageDataGenerator(
                **({"rotation_range": 10, "zoom_range": 0.1, "width_shift_range": 0.1, "height_shift_range": 0.1} if augment else {})
            ).flow_from_directory(
                directory, target_size=(IMG_SIZE, IMG_SIZE), color_mode="grayscale", class_mode="binary",
                batch_size=BATCH, shuffle=True, seed=0,
            )

            def legacy_batches():
                while True:
                    x, y = next(legacy)
                    yield x.astype("float32"), y.astype("float32")

            ours = pipeline.make_dataset(
                frame, img_size=IMG_SIZE, channels=1, batch_size=BATCH, shuffle=True, augment=augment, repeat=True, seed=0
            )
            timings, input_only = {}, {}
            for name, data in (("legacy_flow_from_directory", legacy_batches()), ("core_pipeline_tf_data", ours)):
                keras.utils.set_random_seed(0)
                model = zoo.build_model("cnn_reference", img_size=IMG_SIZE)
                model.compile(optimizer="adam", loss="binary_crossentropy")
                timings[name] = _time_epochs(model, data, steps)
                input_only[name] = _time_input_only(data, steps)
            legacy_input = steps * BATCH / np.mean(input_only["legacy_flow_from_directory"][1:])
            ours_input = steps * BATCH / np.mean(input_only["core_pipeline_tf_data"][1:])
            legacy_ips = steps * BATCH / np.mean(timings["legacy_flow_from_directory"][1:])
            ours_ips = steps * BATCH / np.mean(timings["core_pipeline_tf_data"][1:])
            first_ratio = timings["legacy_flow_from_directory"][0] / timings["core_pipeline_tf_data"][0]
            results[label] = {
                "legacy_images_per_s": round(float(legacy_ips), 1),
                "pipeline_images_per_s": round(float(ours_ips), 1),
                "speedup_steady_epochs": round(float(ours_ips / legacy_ips), 2),
                "speedup_first_epoch": round(float(first_ratio), 2),
                "epoch_seconds": {k: [round(t, 2) for t in v] for k, v in timings.items()},
                "input_only_legacy_images_per_s": round(float(legacy_input), 1),
                "input_only_pipeline_images_per_s": round(float(ours_input), 1),
                "input_only_speedup": round(float(ours_input / legacy_input), 2),
            }
            print(
                f"{label:10s} feeding the CNN: legacy {legacy_ips:7.1f} img/s | tf.data {ours_ips:7.1f} img/s | "
                f"x{ours_ips / legacy_ips:.2f} (epochs 2-{EPOCHS}), x{first_ratio:.2f} (first epoch)\n"
                f"{'':10s} input only:      legacy {legacy_input:7.1f} img/s | tf.data {ours_input:7.1f} img/s | "
                f"x{ours_input / legacy_input:.2f}",
                flush=True,
            )
    results["setup"] = {
        "images": n, "epochs": EPOCHS, "batch_size": BATCH, "img_size": IMG_SIZE, "model": "cnn_reference (grey)",
        "legacy": "tf_keras.preprocessing.image.ImageDataGenerator.flow_from_directory (tf-keras 2.21)",
    }
    path = write_results("pipeline", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
