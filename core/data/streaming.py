"""Streaming tf.data pipeline for datasets too large to hold in memory (NIH ChestX-ray14: 112,120 images, 45 GB).

Unlike :func:`core.data.pipeline.make_dataset`, which decodes every distinct image once and caches it in memory,
this pipeline keeps only file paths in memory and reads images from disk as it goes:

    per-class path streams (shuffled each epoch, sharded per worker)
      -> class balancing by sampling from the streams (tf.data.Dataset.sample_from_datasets)
      -> interleaved file reads -> parallel decode + resize (num_parallel_calls=AUTOTUNE)
      -> batch -> float32 -> optional augmentation -> optional class-weight sample weights -> prefetch

Memory is bounded by the prefetch and parallelism buffers (a few batches), not by the number of images.

Class balancing (same options as :mod:`core.data.pipeline`, without materialising lists of images):
- ``"none"`` / ``"class-weight"``: every image once per epoch, classes mixed at their natural rates;
  ``"class-weight"`` adds per-example weights n / (2 n_class) as a third element (x, y, w).
- ``"oversample"``: the majority class once per epoch, the minority stream repeated (reshuffled at every
  pass) and drawn at the same rate: about 2 x n_majority images per epoch, half positive.
- ``"undersample"``: the minority class once per epoch, the majority stream repeated and drawn at the same
  rate, so every epoch sees a fresh subset of the majority: about 2 x n_minority images per epoch.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from core.data import pipeline

log = logging.getLogger(__name__)

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import
READ_CYCLE_LENGTH = 16  # files read concurrently by the interleave


def epoch_size(labels: np.ndarray | pd.Series, balance: str) -> int:
    """Images per epoch for the labels ``(n,)`` of one stream under ``balance`` (expected value for sampling modes)."""
    pipeline.check_balance(balance)
    labels = np.asarray(labels, dtype=int)
    counts = [int((labels == 0).sum()), int((labels == 1).sum())]
    if balance == "oversample":
        return 2 * max(counts)
    if balance == "undersample":
        return 2 * min(counts)
    return int(labels.size)


def decode_bytes(raw: Any, *, img_size: int, channels: int) -> Any:
    """Encoded image bytes (tf string) -> uint8 ``(S, S, C)``; the same ops as core.data.pipeline.decode_and_resize."""
    import tensorflow as tf

    image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    image = tf.image.resize(image, (img_size, img_size), method="area")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def _class_stream(paths: np.ndarray, label: int, *, shuffle: bool, seed: int, endless: bool) -> Any:
    """(path, label) pairs of one class: reshuffled at each pass, repeated forever when ``endless``."""
    import tensorflow as tf

    stream = tf.data.Dataset.from_tensor_slices(paths.astype(str))
    if shuffle:  # the buffer holds path strings only (about 100 bytes each), never images
        stream = stream.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if endless:
        stream = stream.repeat()
    return stream.map(lambda path: (path, tf.constant(float(label), tf.float32)))


def balanced_paths(frame: pd.DataFrame, balance: str, *, shuffle: bool, seed: int = 0) -> Any:
    """(path, label) pairs for one epoch, balanced by sampling from per-class streams when asked."""
    import tensorflow as tf

    if not shuffle:
        if balance in {"oversample", "undersample"}:
            raise ValueError(f"balance={balance!r} samples at random; pass shuffle=True (training data only).")
        return tf.data.Dataset.from_tensor_slices(
            (frame["path"].astype(str).to_numpy(), frame["label"].to_numpy(dtype="float32"))
        )
    by_class = [frame.loc[frame["label"] == label, "path"].astype(str).to_numpy() for label in (0, 1)]
    counts = [len(paths) for paths in by_class]
    if balance in {"oversample", "undersample"}:
        if min(counts) == 0:
            raise ValueError(f"Cannot {balance}: the training rows lack one of the classes (counts {counts}).")
        minority = int(np.argmin(counts)) if counts[0] != counts[1] else 1
        # oversample: the minority stream never ends; undersample: the majority stream never ends.
        endless = [(label == minority) == (balance == "oversample") for label in (0, 1)]
        streams = [
            _class_stream(by_class[label], label, shuffle=True, seed=seed + label, endless=endless[label])
            for label in (0, 1)
        ]
        return tf.data.Dataset.sample_from_datasets(streams, weights=[0.5, 0.5], seed=seed, stop_on_empty_dataset=True)
    present = [label for label in (0, 1) if counts[label]]
    streams = [_class_stream(by_class[label], label, shuffle=True, seed=seed + label, endless=False) for label in present]
    if len(streams) == 1:
        return streams[0]
    weights = [counts[label] / sum(counts) for label in present]
    return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed, stop_on_empty_dataset=False)


def make_streaming_dataset(
    frame: pd.DataFrame,
    *,
    img_size: int,
    channels: int,
    batch_size: int = 32,
    shuffle: bool = False,
    balance: str = "none",
    augment: bool | str | pipeline.AugmentConfig = False,
    seed: int = 0,
    repeat: bool = False,
    num_shards: int = 1,
    shard_index: int = 0,
    class_weight: dict[int, float] | None = None,
    with_labels: bool = True,
    drop_remainder: bool = False,
) -> Any:
    """tf.data.Dataset streaming (images float32 ``(B, S, S, C)`` in [0, 255], labels float32 ``(B,)``) from disk.

    Only this shard's rows (``core.training.distribute.shard_rows``, class-stratified) are read, and tf.data's own
    auto-sharding is switched off for it. ``class_weight`` ({0: w0, 1: w1}) adds per-example weights as a
    third element, so no ``class_weight`` needs to reach ``fit`` (which cannot map distributed datasets).
    """
    import tensorflow as tf

    from core.training import distribute

    pipeline.check_balance(balance)
    if frame.empty:
        raise ValueError("No images to stream: the selected rows of the dataset index are empty.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels}.")
    if "label" not in frame:
        if with_labels:
            raise ValueError("The rows have no 'label' column; pass with_labels=False to stream images only.")
        frame = frame.assign(label=0)
    rows = distribute.shard_rows(frame, num_shards, shard_index)
    if rows.empty:
        raise ValueError(f"Shard {shard_index} of {num_shards} has no images: use fewer workers than images.")
    dataset = balanced_paths(rows, balance, shuffle=shuffle, seed=seed)
    if repeat:
        dataset = dataset.repeat()
    ordered = not shuffle
    dataset = dataset.interleave(
        lambda path, label: tf.data.Dataset.from_tensors((tf.io.read_file(path), label)),
        cycle_length=READ_CYCLE_LENGTH, block_length=1, num_parallel_calls=AUTOTUNE, deterministic=ordered,
    )
    dataset = dataset.map(
        lambda raw, label: (decode_bytes(raw, img_size=img_size, channels=channels), label),
        num_parallel_calls=AUTOTUNE, deterministic=ordered,
    )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if not repeat and balance not in {"oversample", "undersample"}:  # every row exactly once: tell Keras how many batches
        n_batches = len(rows) // batch_size if drop_remainder else -(-len(rows) // batch_size)
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(n_batches))
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    augment_fn = pipeline.augment_batch_fn(augment, seed=seed)
    if augment_fn is not None:
        dataset = dataset.map(lambda x, y: (augment_fn(x), y), num_parallel_calls=AUTOTUNE)
    if class_weight is not None and with_labels:
        table = tf.constant([float(class_weight[0]), float(class_weight[1])], tf.float32)
        dataset = dataset.map(lambda x, y: (x, y, tf.gather(table, tf.cast(y, tf.int32))), num_parallel_calls=AUTOTUNE)
    if not with_labels:
        dataset = dataset.map(lambda x, y: x)
    dataset = dataset.prefetch(AUTOTUNE)
    if num_shards > 1:
        dataset = distribute.with_auto_shard(dataset, "OFF")  # already sharded by file, above
    return dataset


PIPELINES = ("auto", "memory", "streaming")
STREAMING_MIN_IMAGES = 20_000  # "auto" streams above this many training images (a decoded 224-px RGB cache of 20k is ~3 GB)


def use_streaming(mode: str, *, n_images: int, strategy: str = "none") -> bool:
    """Whether training streams from disk: 'streaming' yes, 'memory' no, 'auto' for large sets or multi-worker runs."""
    if mode not in PIPELINES:
        raise ValueError(f"Unknown input pipeline {mode!r}. Choose one of: {', '.join(PIPELINES)}.")
    if mode != "auto":
        return mode == "streaming"
    return strategy == "multiworker" or n_images > STREAMING_MIN_IMAGES


def training_datasets(
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
    *,
    img_size: int,
    channels: int,
    global_batch: int,
    balance: str = "none",
    augment: bool | str | pipeline.AugmentConfig = False,
    seed: int = 0,
    strategy: Any = None,
) -> tuple[Any, Any, int]:
    """(train data, validation data, steps per epoch) for ``fit`` under ``strategy`` (default: the current one).

    Training streams repeat forever and every worker runs the same number of steps (from :func:`epoch_size`);
    with a tf.distribute strategy each input pipeline reads only its own shard at the per-replica batch.
    Class weights ('class-weight') travel as per-example weights, so ``fit`` gets ``class_weight=None``.
    """
    import tensorflow as tf

    from core.training import distribute

    strategy = strategy or tf.distribute.get_strategy()
    class_weight = pipeline.class_weights(train_frame["label"].to_numpy()) if balance == "class-weight" else None

    def one_pipeline(*, batch_size: int, num_shards: int, shard_index: int) -> Any:
        return make_streaming_dataset(
            train_frame, img_size=img_size, channels=channels, batch_size=batch_size, shuffle=True, balance=balance,
            augment=augment, seed=seed + 1000 * shard_index, repeat=True, num_shards=num_shards,
            shard_index=shard_index, class_weight=class_weight, drop_remainder=True,
        )

    if tf.distribute.has_strategy() or strategy is not tf.distribute.get_strategy():
        train = distribute.distribute_dataset(strategy, one_pipeline, global_batch=global_batch)
    else:
        train = one_pipeline(batch_size=global_batch, num_shards=1, shard_index=0)
    val = make_streaming_dataset(val_frame, img_size=img_size, channels=channels, batch_size=global_batch)
    steps = max(1, epoch_size(train_frame["label"], balance) // global_batch)
    log.info("Streaming %d training images (%s): %d steps of %d images per epoch", len(train_frame), balance, steps, global_batch)
    return train, val, steps
