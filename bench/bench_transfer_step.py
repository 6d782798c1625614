"""Films/s of one training step for the ImageNet backbones that could be fine-tuned end to end on this CPU.

Each candidate is built exactly as ``train.py`` builds it (core.models.zoo: raw [0, 255] RGB in, preprocessing
inside, sigmoid out), every layer trainable or only the top blocks, and trained with Keras ``train_on_batch`` on
batches of real training films (224-px Kermany JPEGs resized to the candidate's side), side by side in one run.
The first batches are warm-up (graph tracing) and not timed. The result is what one pass over the 5,216
training films costs, which is how the end-to-end recipe's input size and depth were chosen.

Run: ``python -m bench transfer_step`` (writes bench/results/transfer_step.json).
"""

from __future__ import annotations

import time

import numpy as np

from bench.results_io import write_results

BATCH = 32
WARMUP_BATCHES = 2
TIMED_BATCHES = 4
TRAINING_FILMS = 5216
# (architecture, input side, whether only the top blocks train: from the zoo's fine-tuning point, as train.py does)
CANDIDATES = (
    ("xception", 224, False),
    ("xception", 160, False),
    ("xception", 224, True),
    ("efficientnet_lite0", 224, False),
    ("efficientnet_lite0", 192, False),
    ("efficientnet_lite0", 224, True),
)


def _films(side: int, count: int) -> np.ndarray:
    """``count`` real training films as RGB float32 at ``side`` px (half NORMAL, half PNEUMONIA)."""
    from PIL import Image

    from core import config

    root = config.data_root() / "train"
    paths = sorted((root / "NORMAL").glob("*.jpeg"))[: count // 2] + sorted((root / "PNEUMONIA").glob("*.jpeg"))[: count - count // 2]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((side, side), Image.BILINEAR), dtype="float32") for p in paths])


def _measure(architecture: str, side: int, top_only: bool) -> dict:
    import keras

    from core.models import zoo
    from core.training import fitting

    trainable_from = zoo.get_spec(architecture).finetune_from if top_only else None
    model = zoo.build_model(architecture, img_size=side, weights="imagenet", seed=0)
    if trainable_from:
        fitting.set_finetune_trainable(model, trainable_from)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    films = _films(side, BATCH)
    labels = np.array([0] * (BATCH // 2) + [1] * (BATCH - BATCH // 2), dtype="float32")
    for _ in range(WARMUP_BATCHES):
        model.train_on_batch(films, labels)
    start = time.perf_counter()
    for _ in range(TIMED_BATCHES):
        model.train_on_batch(films, labels)
    seconds = time.perf_counter() - start
    rate = BATCH * TIMED_BATCHES / seconds
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {
        "architecture": architecture, "side": side, "trainable_from": trainable_from or "every layer",
        "trainable_parameters": trainable, "films_per_s": round(rate, 2),
        "minutes_per_pass": round(TRAINING_FILMS / rate / 60, 1),
    }


def main() -> None:
    """Measure every candidate in one run and write bench/results/transfer_step.json."""
    rows = []
    for architecture, side, top_only in CANDIDATES:
        row = _measure(architecture, side, top_only)
        rows.append(row)
        print(row, flush=True)
    fastest = max(row["films_per_s"] for row in rows)
    for row in rows:
        row["relative_to_fastest"] = round(row["films_per_s"] / fastest, 2)
    print(write_results("transfer_step", {"batch": BATCH, "timed_batches": TIMED_BATCHES, "candidates": rows}))


if __name__ == "__main__":
    main()
