"""core.data.streaming: same pixels as core.data.pipeline, balancing from per-class streams, shards, weights, pipeline choice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.data import pipeline, streaming

pytest.importorskip("tensorflow")


def _real_rows(data_root: Path, n_per_class: int) -> pd.DataFrame:
    rows = []
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for path in sorted((data_root / "test" / name).glob("*.jpeg"))[:n_per_class]:
            rows.append({"path": str(path), "label": label})
    return pd.DataFrame(rows)


def _fake_paths(n_negative: int, n_positive: int) -> pd.DataFrame:
    """Path strings only (never read): balanced_paths never touches the files."""
    return pd.DataFrame({"path": [f"neg{i}" for i in range(n_negative)] + [f"pos{i}" for i in range(n_positive)],
                         "label": [0] * n_negative + [1] * n_positive})


def test_images_are_the_pixels_of_the_in_memory_pipeline(data_root: Path) -> None:
    frame = _real_rows(data_root, 6)
    streamed = list(streaming.make_streaming_dataset(frame, img_size=48, channels=1, batch_size=5).as_numpy_iterator())
    cached = list(pipeline.make_dataset(frame, img_size=48, channels=1, batch_size=5).as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([x for x, _ in streamed]), np.concatenate([x for x, _ in cached]))
    np.testing.assert_array_equal(np.concatenate([y for _, y in streamed]), frame["label"].to_numpy(dtype="float32"))


def test_oversampling_sees_every_majority_image_once_and_repeats_the_minority() -> None:
    frame = _fake_paths(200, 20)
    drawn = [(p.decode(), int(y)) for p, y in streaming.balanced_paths(frame, "oversample", shuffle=True, seed=3).as_numpy_iterator()]
    counts = Counter(p for p, _ in drawn)
    assert all(counts[f"neg{i}"] == 1 for i in range(200))  # the epoch ends when the majority stream does
    positives = [p for p, y in drawn if y == 1]
    assert set(positives) == {f"pos{i}" for i in range(20)} and max(counts[p] for p in positives) > 1
    # 200 negatives at a 50/50 draw: the positives drawn follow a negative binomial; 4 sd around 200
    assert abs(len(positives) - 200) < 4 * np.sqrt(400)


def test_undersampling_sees_every_minority_image_once_and_fresh_negatives() -> None:
    frame = _fake_paths(200, 20)
    drawn = [(p.decode(), int(y)) for p, y in streaming.balanced_paths(frame, "undersample", shuffle=True, seed=3).as_numpy_iterator()]
    assert sorted(p for p, y in drawn if y == 1) == sorted(f"pos{i}" for i in range(20))
    negatives = [p for p, y in drawn if y == 0]
    assert len(negatives) == len(set(negatives)) < 100  # a subset of the 200, none twice
    assert streaming.epoch_size(frame["label"], "undersample") == 40 and streaming.epoch_size(frame["label"], "oversample") == 400


def test_natural_balance_shuffles_each_image_exactly_once_per_epoch() -> None:
    frame = _fake_paths(50, 7)
    epoch = [p.decode() for p, _ in streaming.balanced_paths(frame, "class-weight", shuffle=True, seed=1).as_numpy_iterator()]
    assert sorted(epoch) == sorted(frame["path"]) and epoch != frame["path"].tolist()
    with pytest.raises(ValueError, match="pass shuffle=True"):
        streaming.balanced_paths(frame, "oversample", shuffle=False)


def test_shards_and_class_weights(data_root: Path) -> None:
    frame = _real_rows(data_root, 4)
    weights = {0: 2.5, 1: 0.5}
    seen = []
    for shard in range(2):
        dataset = streaming.make_streaming_dataset(frame, img_size=32, channels=1, batch_size=8, num_shards=2,
                                                   shard_index=shard, class_weight=weights)
        for x, y, w in dataset.as_numpy_iterator():
            np.testing.assert_array_equal(w, np.where(y == 1, 0.5, 2.5).astype("float32"))
            seen.extend(map(bytes, x.reshape(len(x), -1)))
        assert y.tolist() == [0.0, 0.0, 1.0, 1.0]  # each shard keeps the prevalence
    assert len(seen) == len(set(seen)) == len(frame)  # disjoint shards covering every image


def test_validation_stream_has_a_known_length(data_root: Path) -> None:
    dataset = streaming.make_streaming_dataset(_real_rows(data_root, 5), img_size=32, channels=1, batch_size=4)
    assert int(dataset.cardinality()) == 3


def test_pipeline_choice() -> None:
    assert streaming.use_streaming("auto", n_images=86_524) and not streaming.use_streaming("auto", n_images=4_400)
    assert streaming.use_streaming("auto", n_images=100, strategy="multiworker")
    assert not streaming.use_streaming("memory", n_images=10**6) and streaming.use_streaming("streaming", n_images=10)
    with pytest.raises(ValueError, match="Choose one of: auto, memory, streaming"):
        streaming.use_streaming("disk", n_images=1)
