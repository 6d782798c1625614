"""Cached backbone features: a frozen transfer model's feature maps computed once per image and memory-mapped.

Transfer models train on CPU-friendly cached features (core.training): the input of the head (the backbone's
last feature map) and of the top blocks (e.g. Xception's block 13) are computed once per image and stored as
float16 ``.npy`` files under ``.cache/features/<architecture>-<size>-<key>/``, keyed by architecture, input size,
weights source, cached layers, the dataset's files and, for augmented views, the augmentation and view seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core import config
from core.progress import progress_bar

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1


def files_fingerprint(frame: pd.DataFrame) -> str:
    """sha1 over the sorted (relpath, file size) pairs of the rows: changes when files are added/removed/replaced."""
    digest = hashlib.sha1()
    for relpath, path in sorted(zip(frame["relpath"].astype(str), frame["path"].astype(str))):
        digest.update(f"{relpath}\t{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()


def feature_cache_key(
    architecture: str,
    img_size: int,
    weights_source: str,
    layer_names: Sequence[str],
    frame: pd.DataFrame,
    view: str | None = None,
) -> str:
    """Cache key of backbone features: model + input size + weights + cached layers + data fingerprint (+ augmented view)."""
    content = {
        "v": FEATURE_CACHE_VERSION,
        "architecture": architecture,
        "img_size": int(img_size),
        "weights": weights_source,
        "layers": list(layer_names),
        "data": files_fingerprint(frame),
    }
    if view:
        content["view"] = view
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def cached_layer_inputs(
    model: Any,
    architecture: str,
    frame: pd.DataFrame,
    *,
    layer_names: Sequence[str],
    img_size: int,
    channels: int,
    weights_source: str,
    cache_dir: Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    augment: str | None = None,
    view_seed: int = 0,
) -> dict[str, np.ndarray]:
    """Inputs of the named layers of a frozen ``model`` for every row, as float16 ``(N, h, w, c)`` in row order.

    Computed once and memory-mapped from ``<cache_dir>/features/<key>/<layer>.npy``; ``frame`` should be the
    whole index (all splits) so every run on the same data shares one cache. With ``augment`` (a
    :data:`core.data.pipeline.AUGMENT_PRESETS` name) each film is randomly augmented first (one view per
    ``view_seed``), so a frozen backbone still sees the acquisition changes the head must learn to ignore.
    """
    import keras

    from core.data import pipeline

    cache_root = Path(cache_dir or config.CACHE_DIR) / "features"
    ordered = frame.sort_values("relpath")
    view = f"{augment}-{view_seed}" if augment else None
    key = feature_cache_key(architecture, img_size, weights_source, layer_names, ordered, view=view)
    folder = cache_root / f"{architecture}-{img_size}-{key}"
    files = {name: folder / f"{name}.npy" for name in layer_names}
    relpaths_file = folder / "relpaths.json"
    if not (relpaths_file.is_file() and all(f.is_file() for f in files.values())):
        log.info("Computing %s features for %d images (cached in %s)", architecture, len(ordered), folder)
        extractor = keras.Model(model.input, [model.get_layer(name).input for name in layer_names])
        tmp = cache_root / f".tmp-{folder.name}-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        outputs = None
        dataset = pipeline.make_dataset(
            ordered, img_size=img_size, channels=channels, batch_size=batch_size, cache=False, with_labels=False
        )
        if augment:
            import tensorflow as tf

            tf.random.set_seed(view_seed)
            augment_fn = pipeline.augment_batch_fn(augment, seed=view_seed)
            dataset = dataset.map(augment_fn)
        bar = progress_bar(
            total=len(ordered),
            desc=f"{architecture} features{' ' + view if view else ''}",
            unit="img",
            enabled=progress,
        )
        start = 0
        for batch in dataset:
            values = extractor(batch, training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            if outputs is None:
                outputs = [
                    np.lib.format.open_memmap(
                        tmp / f"{name}.npy",
                        mode="w+",
                        dtype="float16",
                        shape=(len(ordered), *tuple(v.shape[1:])),
                    )
                    for name, v in zip(layer_names, values)
                ]
            stop = start + int(values[0].shape[0])
            for out, value in zip(outputs, values):
                out[start:stop] = np.asarray(value, dtype="float16")
            start = stop
            bar.update(int(values[0].shape[0]))
        bar.close()
        for out in outputs or []:
            out.flush()
        del outputs
        (tmp / "relpaths.json").write_text(json.dumps(ordered["relpath"].astype(str).tolist()))
        folder.parent.mkdir(parents=True, exist_ok=True)
        if folder.exists():  # another process finished first
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    cached_relpaths = json.loads(relpaths_file.read_text())
    position = pd.Series(np.arange(len(cached_relpaths)), index=cached_relpaths)
    rows = position.loc[frame["relpath"].astype(str)].to_numpy()
    return {name: np.load(path, mmap_mode="r")[rows] for name, path in files.items()}
