"""core.data.pipeline on a small real subset: shapes, dtypes, pixels, balancing counts, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.data import pipeline


@pytest.fixture(scope="module")
def small_frame(data_root: Path) -> pd.DataFrame:
    """12 NORMAL + 30 PNEUMONIA real training images (an imbalanced frame like the real one)."""
    rows = []
    for label, folder, count in ((0, "NORMAL", 12), (1, "PNEUMONIA", 30)):
        for path in sorted((data_root / "train" / folder).glob("*.jpeg"))[:count]:
            rows.append({"path": str(path), "relpath": path.relative_to(data_root).as_posix(), "label": label, "split": "train"})
    return pd.DataFrame(rows)


def test_grey_batches_have_shape_dtype_and_range(small_frame: pd.DataFrame) -> None:
    dataset = pipeline.make_dataset(small_frame, img_size=64, channels=1, batch_size=16)
    batches = list(dataset.as_numpy_iterator())
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert images.shape == (42, 64, 64, 1) and images.dtype == np.float32
    assert labels.dtype == np.float32 and labels.tolist() == small_frame["label"].astype(float).tolist()
    assert 0.0 <= images.min() and images.max() <= 255.0 and images.max() > 100.0


def test_native_size_rgb_equals_the_decoded_file(small_frame: pd.DataFrame) -> None:
    """At 224 px (the files' own size) the pipeline returns the JPEG's pixels, as PIL decodes them."""
    frame = small_frame.head(3)
    images = pipeline.load_arrays(frame, img_size=224, channels=3)
    assert images.shape == (3, 224, 224, 3)
    for image, path in zip(images, frame["path"]):
        expected = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        assert expected.shape == (224, 224, 3)
        assert np.abs(image - expected).mean() < 1.0
        assert np.abs(image - expected).max() <= 16.0  # two JPEG decoders may differ by a few levels


def test_grey_resize_is_the_area_mean(small_frame: pd.DataFrame) -> None:
    """224 -> 112 with area resampling averages 2x2 blocks of the grey image."""
    path = small_frame["path"].iloc[0]
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    expected = grey.reshape(112, 2, 112, 2).mean(axis=(1, 3))
    image = pipeline.load_arrays(small_frame.head(1), img_size=112, channels=1)[0, :, :, 0]
    assert np.abs(image - expected).mean() < 1.5


def test_oversample_balances_by_repeating_the_minority(small_frame: pd.DataFrame) -> None:
    balanced = pipeline.balance_frame(small_frame, "oversample", seed=1)
    counts = balanced["label"].value_counts().to_dict()
    assert counts == {0: 30, 1: 30}
    assert set(balanced["path"]) == set(small_frame["path"])  # every original image is kept


def test_undersample_balances_by_dropping_the_majority(small_frame: pd.DataFrame) -> None:
    balanced = pipeline.balance_frame(small_frame, "undersample", seed=1)
    assert balanced["label"].value_counts().to_dict() == {0: 12, 1: 12}
    assert not balanced["path"].duplicated().any()
    assert set(balanced.loc[balanced["label"] == 0, "path"]) == set(small_frame.loc[small_frame["label"] == 0, "path"])


def test_oversampled_dataset_yields_balanced_labels(small_frame: pd.DataFrame) -> None:
    dataset = pipeline.make_dataset(small_frame, img_size=32, channels=1, batch_size=64, shuffle=True, balance="oversample")
    labels = np.concatenate([y for _, y in dataset.as_numpy_iterator()])
    assert len(labels) == 60 and labels.sum() == 30


def test_none_and_class_weight_keep_the_rows(small_frame: pd.DataFrame) -> None:
    for mode in ("none", "class-weight"):
        assert pipeline.balance_frame(small_frame, mode).equals(small_frame)


def test_class_weights_match_scikit_learn(small_frame: pd.DataFrame) -> None:
    from sklearn.utils.class_weight import compute_class_weight

    labels = small_frame["label"].to_numpy()
    expected = compute_class_weight("balanced", classes=np.array([0, 1]), y=labels)
    weights = pipeline.class_weights(labels)
    assert weights == pytest.approx({0: expected[0], 1: expected[1]})
    assert weights[0] == pytest.approx(42 / (2 * 12))


def test_unknown_balance_is_refused(small_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="oversample"):
        pipeline.make_dataset(small_frame, img_size=32, channels=1, balance="smote")


def test_augmentation_changes_pixels_keeps_shape_and_never_flips(small_frame: pd.DataFrame) -> None:
    plain = pipeline.make_dataset(small_frame.head(8), img_size=64, channels=1, batch_size=8)
    augmented = pipeline.make_dataset(small_frame.head(8), img_size=64, channels=1, batch_size=8, augment=True, seed=3)
    x0 = next(iter(plain.as_numpy_iterator()))[0]
    x1 = next(iter(augmented.as_numpy_iterator()))[0]
    assert x1.shape == x0.shape and x1.dtype == np.float32
    assert 0.0 <= x1.min() and x1.max() <= 255.0
    assert np.abs(x1 - x0).mean() > 1.0
    layer_types = [type(layer).__name__ for layer in pipeline.augmentation_model().layers]
    assert "RandomFlip" not in layer_types and "RandomRotation" in layer_types
    flip = pipeline.augmentation_model(pipeline.AugmentConfig(horizontal_flip=True))
    assert "RandomFlip" in [type(layer).__name__ for layer in flip.layers]


def test_missing_labels_column_is_explained(small_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="with_labels=False"):
        pipeline.make_dataset(small_frame.drop(columns="label"), img_size=32, channels=1)


def test_empty_split_selection_is_explained(small_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no images in split"):
        pipeline.select_split(small_frame, "test")


def test_augment_presets_resolve_and_unknown_is_explained() -> None:
    assert pipeline.resolve_augment(True) == pipeline.REFERENCE_AUGMENT
    assert pipeline.resolve_augment("acquisition") == pipeline.ACQUISITION_AUGMENT
    assert pipeline.resolve_augment(False) is None and pipeline.resolve_augment("none") is None
    with pytest.raises(ValueError, match="acquisition"):
        pipeline.resolve_augment("strongest")


def test_acquisition_jitter_with_everything_off_is_the_identity() -> None:
    images = np.random.default_rng(0).uniform(0, 255, (3, 16, 16, 1)).astype("float32")
    off = pipeline.AugmentConfig(gamma=0.0, blur_sigma=0.0, noise_std=0.0)
    np.testing.assert_array_equal(np.asarray(pipeline.acquisition_jitter(images, off)), images)


def test_gamma_only_maps_black_and_white_to_themselves_and_keeps_order() -> None:
    ramp = np.tile(np.linspace(0, 255, 16, dtype="float32"), (2, 16, 1))[..., None]
    out = np.asarray(pipeline.acquisition_jitter(ramp, pipeline.AugmentConfig(gamma=0.6), seed=1))
    np.testing.assert_allclose(out[:, :, 0, 0], 0.0, atol=1e-4)
    np.testing.assert_allclose(out[:, :, -1, 0], 255.0, atol=1e-3)
    assert (np.diff(out[0, 0, :, 0]) > 0).all()  # a power curve keeps the grey-level order


def test_gaussian_blur_keeps_a_flat_image_and_the_mass_of_an_impulse() -> None:
    flat = np.full((1, 20, 20, 1), 100.0, dtype="float32")
    np.testing.assert_allclose(np.asarray(pipeline.gaussian_blur(flat, 1.5)), flat, rtol=1e-5)
    impulse = np.zeros((1, 21, 21, 1), dtype="float32")
    impulse[0, 10, 10, 0] = 255.0
    blurred = np.asarray(pipeline.gaussian_blur(impulse, 1.0))
    assert blurred.sum() == pytest.approx(255.0, rel=1e-4)
    assert blurred[0, 10, 10, 0] == blurred.max() and blurred[0, 10, 10, 0] < 255.0 * 0.2


def test_acquisition_augmentation_is_seeded_in_range_and_varies_per_batch(small_frame: pd.DataFrame) -> None:
    import tensorflow as tf

    images = pipeline.load_arrays(small_frame.head(8), img_size=48, channels=1)

    def views(seed: int) -> list[np.ndarray]:
        augment = pipeline.augment_batch_fn("acquisition", seed=seed)
        dataset = tf.data.Dataset.from_tensor_slices(np.concatenate([images, images])).batch(8).map(augment)
        return [batch.numpy() for batch in dataset]

    first, again, other = views(3), views(3), views(4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))  # same seed, same views
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert not np.array_equal(first[0], first[1])  # a new draw for every batch of the same films
    assert first[0].shape == images.shape and first[0].min() >= 0.0 and first[0].max() <= 255.0


@pytest.mark.parametrize("independent", [False, True])
def test_independent_zoom_changes_the_aspect_and_plain_zoom_keeps_it(independent: bool) -> None:
    """Zooming out a white square pads it with black: equally on every side unless height and width are independent."""
    config = pipeline.AugmentConfig(rotation=0.0, zoom=0.3, shift=0.0, brightness=0.0, contrast=0.0,
                                    independent_zoom=independent)
    augment = pipeline.augment_batch_fn(config, seed=5)
    white = np.full((16, 64, 64, 1), 255.0, dtype="float32")
    out = np.asarray(augment(white))
    black_rows = (out.max(axis=2)[..., 0] < 128).sum(axis=1)  # per image: rows that are entirely padding
    black_columns = (out.max(axis=1)[..., 0] < 128).sum(axis=1)
    difference = np.abs(black_rows - black_columns)
    if independent:
        assert difference.max() >= 4  # some view padded on the sides only (or top/bottom only)
    else:
        assert difference.max() <= 1


def test_letterbox_adds_black_bars_on_the_sides_only() -> None:
    config = pipeline.AugmentConfig(rotation=0.0, zoom=0.0, shift=0.0, brightness=0.0, contrast=0.0, letterbox=0.25)
    out = np.asarray(pipeline.augment_batch_fn(config, seed=1)(np.full((8, 64, 64, 1), 255.0, dtype="float32")))
    black_rows = (out.max(axis=2)[..., 0] < 128).sum(axis=1)
    black_columns = (out.max(axis=1)[..., 0] < 128).sum(axis=1)
    assert (black_rows == 0).all()  # the height is kept
    assert black_columns.max() >= 4 and black_columns.max() <= int(0.25 * 64) + 2  # bars of at most a quarter of the width


def test_mixup_batch_mixes_images_labels_and_weights_with_the_given_draws() -> None:
    from core.data import pipeline

    images = np.stack([np.full((2, 2, 1), v, np.float32) for v in (0.0, 100.0, 200.0)])
    labels = np.array([0.0, 1.0, 1.0], np.float32)
    weights = np.array([2.0, 0.5, 0.5], np.float32)
    lam = np.array([0.25, 1.0, 0.5], np.float32)
    partner = np.array([1, 0, 0], np.int32)
    x, y, w = (np.asarray(t) for t in pipeline.mixup_batch(images, labels, weights, lam, partner))
    np.testing.assert_allclose(x[:, 0, 0, 0], [0.25 * 0 + 0.75 * 100, 100.0, 0.5 * 200 + 0.5 * 0])
    np.testing.assert_allclose(y, [0.75, 1.0, 0.5])
    np.testing.assert_allclose(w, [0.25 * 2 + 0.75 * 0.5, 0.5, 0.5 * 0.5 + 0.5 * 2])


def _mixup_frame(data_root: Path, per_class: int = 8) -> pd.DataFrame:
    rows = []
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        for path in sorted((data_root / "train" / name).glob("*.jpeg"))[:per_class]:
            rows.append({"path": str(path), "label": label})
    return pd.DataFrame(rows)


def test_mixup_dataset_gives_soft_labels_and_class_weights_mixed_like_them(data_root: Path) -> None:
    from core.data import pipeline

    frame = _mixup_frame(data_root)
    weights = {0: 1.7, 1: 0.6}
    kwargs = dict(img_size=32, channels=1, batch_size=16, shuffle=True, seed=5, mixup=0.4, class_weight=weights, cache=False)
    x, y, w = next(iter(pipeline.make_dataset(frame, **kwargs)))
    x, y, w = np.asarray(x), np.asarray(y), np.asarray(w)
    assert x.shape == (16, 32, 32, 1) and y.shape == w.shape == (16,)
    assert ((y >= 0) & (y <= 1)).all() and ((y > 0) & (y < 1)).any()  # some pairs of the two classes were mixed
    # Labels and weights are mixed with the same lam and partner, so each weight is the label's weighting.
    np.testing.assert_allclose(w, y * weights[1] + (1 - y) * weights[0], rtol=1e-5)
    again = next(iter(pipeline.make_dataset(frame, **kwargs)))
    np.testing.assert_array_equal(np.asarray(again[1]), y)  # seeded: the same draws
    plain = next(iter(pipeline.make_dataset(frame, **{**kwargs, "mixup": 0.0})))
    assert len(plain) == 2 and set(np.unique(np.asarray(plain[1]))) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="alpha > 0"):
        pipeline.mixup_fn(0.0)
