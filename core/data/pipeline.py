"""tf.data input pipeline from the dataset index: decode, grey/RGB, resize, cache, balance, augment, prefetch.

Images come out as float32 ``(batch, S, S, C)`` raw pixel values in [0, 255] (the models carry their own
preprocessing), labels as float32 ``(batch,)`` with 1 = PNEUMONIA.

Augmentation (``augment=True``) follows the reference projects: small rotations, zoom, shifts, and
brightness/contrast jitter. There is **no horizontal flip by default**: a chest film is not left-right
symmetric. The heart sits on the patient's left (cardiac situs), the aortic knob and the stomach bubble
too, and the right hemidiaphragm is higher; a mirrored film is a different anatomy (situs inversus /
dextrocardia) and the model should not learn that mirrored anatomy is normal. Pneumonia can be in either
lung, so the flip would add little, and it would teach the model to ignore the side of the heart, which is
real signal (and a check a radiologist makes). Pass ``horizontal_flip=True`` only if you know why.

Class balancing (``balance=``):
- ``"none"``: the data as it is (about 3 pneumonia : 1 normal in train).
- ``"class-weight"``: the data as it is; the loss weights each class by n / (2 * n_class)
  (see :func:`class_weights`; the training loop passes them to ``fit``).
- ``"oversample"``: the minority class is repeated (sampled with replacement) up to the majority count.
- ``"undersample"``: the majority class is cut (without replacement) down to the minority count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BALANCE_CHOICES = ("none", "class-weight", "oversample", "undersample")
AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths: rotation as a fraction of a full turn, zoom/shift as fractions of the side."""

    rotation: float = 10.0 / 360.0
    zoom: float = 0.1
    shift: float = 0.1
    brightness: float = 0.1
    contrast: float = 0.1
    horizontal_flip: bool = False
    gamma: float = 0.0
    """Random gamma in [1/(1+g), 1+g] per image (0 = off): exposure / film-curve changes."""
    blur_sigma: float = 0.0
    """Gaussian blur with sigma in [0, blur_sigma] pixels, on half the images (0 = off): detector sharpness."""
    noise_std: float = 0.0
    """Additive Gaussian noise with std in [0, noise_std] grey levels of 255, on half the images (0 = off)."""
    independent_zoom: bool = False
    """Zoom height and width independently (True): also changes the aspect ratio, e.g. black bars on the sides only."""
    letterbox: float = 0.0
    """Squeeze the width by up to this fraction with black bars left and right (0 = off): a wider detector shown square."""


REFERENCE_AUGMENT = AugmentConfig()
"""The reference projects' augmentation (small rotation, zoom, shift, brightness, contrast)."""

ACQUISITION_AUGMENT = AugmentConfig(
    rotation=10.0 / 360.0, zoom=0.3, shift=0.15, brightness=0.2, contrast=0.3, gamma=0.6, blur_sigma=1.5, noise_std=8.0
)
"""Augmentation covering the acquisition changes the audit measures (core.audit): framing (zoom in/out by 30%
with black padding, shifts of 15%), exposure (brightness 20%, contrast 30%, gamma 0.62-1.6), detector sharpness
(blur up to sigma 1.5 px) and quantum noise (up to 8 grey levels)."""

ACQUISITION_ASPECT_AUGMENT = AugmentConfig(
    rotation=10.0 / 360.0, zoom=0.3, shift=0.15, brightness=0.2, contrast=0.3, gamma=0.6, blur_sigma=1.5, noise_std=8.0,
    independent_zoom=True,
)
""":data:`ACQUISITION_AUGMENT` with height and width zoomed independently, so the framing also changes in aspect
(black bars on the sides only, or top and bottom only): the audit's 'pad_sides' change, which every model trained
with the plain acquisition augmentation still failed."""

ACQUISITION_LETTERBOX_AUGMENT = AugmentConfig(
    rotation=10.0 / 360.0, zoom=0.3, shift=0.15, brightness=0.2, contrast=0.3, gamma=0.6, blur_sigma=1.5, noise_std=8.0,
    letterbox=0.25,
)
""":data:`ACQUISITION_AUGMENT` followed by a random letterbox: the width squeezed by up to 25 % with black bars left and
right (the audit's 'pad_sides' change), the height kept."""

AUGMENT_PRESETS = {
    "none": None, "reference": REFERENCE_AUGMENT, "acquisition": ACQUISITION_AUGMENT,
    "acquisition-aspect": ACQUISITION_ASPECT_AUGMENT, "acquisition-letterbox": ACQUISITION_LETTERBOX_AUGMENT,
}


def check_balance(balance: str) -> str:
    """Return ``balance`` if it is one of :data:`BALANCE_CHOICES`, else raise a ValueError naming them."""
    if balance not in BALANCE_CHOICES:
        raise ValueError(f"Unknown class balancing '{balance}'. Choose one of: {', '.join(BALANCE_CHOICES)}.")
    return balance


def select_split(index: pd.DataFrame, splits: str | Sequence[str]) -> pd.DataFrame:
    """Rows of the dataset index in the given split(s), in index order; raises if there are none."""
    wanted = [splits] if isinstance(splits, str) else list(splits)
    frame = index[index["split"].isin(wanted)]
    if frame.empty:
        raise ValueError(
            f"The dataset index has no images in split {wanted}; "
            f"it has {sorted(index['split'].unique())}. Check the dataset folder."
        )
    return frame


def class_weights(labels: Sequence[int] | np.ndarray) -> dict[int, float]:
    """Balanced class weights {0: w0, 1: w1} = n / (2 * n_class), as sklearn's compute_class_weight('balanced')."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels, dtype=int)
    present = np.unique(labels)
    if len(present) < 2:
        raise ValueError("Class weights need both classes (NORMAL and PNEUMONIA) in the training split.")
    values = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, values)}


def balance_frame(frame: pd.DataFrame, balance: str, *, seed: int = 0) -> pd.DataFrame:
    """Rows after over- or under-sampling (``oversample``/``undersample``); other modes return ``frame`` unchanged.

    The result is shuffled with ``seed``; its class counts are equal for over/undersampling.
    """
    check_balance(balance)
    if balance not in {"oversample", "undersample"}:
        return frame
    rng = np.random.default_rng(seed)
    groups = {label: frame[frame["label"] == label] for label in (0, 1)}
    if any(g.empty for g in groups.values()):
        raise ValueError(f"Cannot {balance}: the training split lacks one of the classes.")
    counts = {label: len(g) for label, g in groups.items()}
    target = max(counts.values()) if balance == "oversample" else min(counts.values())
    parts = []
    for label, group in groups.items():
        if len(group) == target:
            parts.append(group)
        elif len(group) < target:  # oversample: keep every row once, draw the rest with replacement
            extra = rng.choice(len(group), size=target - len(group), replace=True)
            parts.append(pd.concat([group, group.iloc[extra]]))
        else:  # undersample
            parts.append(group.iloc[np.sort(rng.choice(len(group), size=target, replace=False))])
    combined = pd.concat(parts)
    return combined.iloc[rng.permutation(len(combined))]


def decode_and_resize(path: Any, *, img_size: int, channels: int) -> Any:
    """Read one image file (tf string tensor) -> uint8 tensor ``(S, S, C)``; grey or RGB as asked, area resize."""
    import tensorflow as tf

    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    image = tf.image.resize(image, (img_size, img_size), method="area")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def augmentation_model(config: AugmentConfig | None = None, *, seed: int = 0) -> Any:
    """A keras.Sequential of random rotation, zoom, shift, brightness, contrast (value range [0, 255])."""
    import keras
    from keras import layers

    config = config or AugmentConfig()
    steps: list[Any] = [
        layers.RandomRotation(config.rotation, fill_mode="constant", seed=seed),
        layers.RandomZoom(
            config.zoom, config.zoom if config.independent_zoom else None, fill_mode="constant", seed=seed + 1
        ),
        layers.RandomTranslation(config.shift, config.shift, fill_mode="constant", seed=seed + 2),
        layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 3),
        layers.RandomContrast(config.contrast, seed=seed + 4),
    ]
    if config.letterbox > 0:
        steps.append(
            layers.RandomZoom((0.0, 0.0), (0.0, config.letterbox), fill_mode="constant", seed=seed + 6)
        )
    if config.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 5))
    return keras.Sequential(steps, name="augmentation")


def resolve_augment(augment: bool | str | AugmentConfig | None) -> AugmentConfig | None:
    """``True`` -> the reference augmentation, a preset name (:data:`AUGMENT_PRESETS`) -> its config, falsy -> None."""
    if isinstance(augment, AugmentConfig):
        return augment
    if augment is True:
        return REFERENCE_AUGMENT
    if not augment:
        return None
    if augment not in AUGMENT_PRESETS:
        raise ValueError(f"Unknown augmentation '{augment}'. Choose one of: {', '.join(AUGMENT_PRESETS)}.")
    return AUGMENT_PRESETS[augment]


def gaussian_kernel(sigma: Any, radius: int = 4) -> Any:
    """A normalised 1-D Gaussian kernel (tf float32, ``2 * radius + 1`` taps) for a scalar ``sigma`` > 0."""
    import tensorflow as tf

    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma, 1e-3)))
    return kernel / tf.reduce_sum(kernel)


def gaussian_blur(images: Any, sigma: Any, radius: int = 4) -> Any:
    """Separable Gaussian blur of a float batch ``(B, H, W, C)`` with one ``sigma`` (pixels); reflect padding."""
    import tensorflow as tf

    channels = images.shape[-1]
    kernel = gaussian_kernel(sigma, radius)
    padded = tf.pad(images, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    horizontal = tf.tile(tf.reshape(kernel, (1, -1, 1, 1)), (1, 1, channels, 1))
    vertical = tf.tile(tf.reshape(kernel, (-1, 1, 1, 1)), (1, 1, channels, 1))
    out = tf.nn.depthwise_conv2d(padded, horizontal, strides=(1, 1, 1, 1), padding="VALID")
    return tf.nn.depthwise_conv2d(out, vertical, strides=(1, 1, 1, 1), padding="VALID")


def acquisition_jitter(images: Any, config: AugmentConfig, *, seed: int | Any = 0) -> Any:
    """Random gamma, blur and noise (as ``config`` sets them) on a float batch ``(B, H, W, C)`` in [0, 255].

    Gamma is drawn per image (log-uniform in [1/(1+g), 1+g]); blur sigma once per batch (half the batches are
    left sharp); noise std per image (half the images noiseless). The result is clipped to [0, 255].
    ``seed`` is an int or a ``keras.random.SeedGenerator`` (pass one generator to get a new draw on every call,
    reproducible from its seed).
    """
    import keras
    import tensorflow as tf

    generator = seed if isinstance(seed, keras.random.SeedGenerator) else keras.random.SeedGenerator(seed)
    batch = tf.shape(images)[0]
    out = images
    if config.gamma > 0:
        log_range = float(np.log1p(config.gamma))
        gamma = tf.exp(keras.random.uniform((batch, 1, 1, 1), -log_range, log_range, seed=generator))
        out = 255.0 * tf.pow(tf.clip_by_value(out / 255.0, 0.0, 1.0), gamma)
    if config.blur_sigma > 0:
        draws = keras.random.uniform((2,), 0.0, 1.0, seed=generator)
        sigma = draws[0] * config.blur_sigma
        out = tf.cond((draws[1] < 0.5) & (sigma > 0.2), lambda: gaussian_blur(out, sigma), lambda: out)
    if config.noise_std > 0:
        std = keras.random.uniform((batch, 1, 1, 1), 0.0, config.noise_std, seed=generator)
        std = std * tf.cast(keras.random.uniform((batch, 1, 1, 1), seed=generator) < 0.5, tf.float32)
        out = out + std * keras.random.normal(tf.shape(out), seed=generator)
    return tf.clip_by_value(out, 0.0, 255.0)


def augment_batch_fn(augment: bool | str | AugmentConfig | None, *, seed: int = 0) -> Any:
    """The batch function ``x -> augmented x`` for ``augment`` (geometry + exposure, then gamma/blur/noise), or None.

    Every random draw comes from generators seeded by ``seed``: the same seed gives the same sequence of views.
    """
    import keras
    import tensorflow as tf

    config = resolve_augment(augment)
    if config is None:
        return None
    augmenter = augmentation_model(config, seed=seed)
    jitter = config.gamma > 0 or config.blur_sigma > 0 or config.noise_std > 0
    generator = keras.random.SeedGenerator(seed + 7) if jitter else None

    def apply(x: Any) -> Any:
        x = tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0)
        return acquisition_jitter(x, config, seed=generator) if jitter else x

    return apply


def mixup_batch(images: Any, labels: Any, weights: Any, lam: Any, partner: Any) -> tuple[Any, Any, Any]:
    """Mixup (Zhang et al. 2018) of one batch with given draws: every sample i becomes
    ``lam[i] * sample[i] + (1 - lam[i]) * sample[partner[i]]``, for the images ``(B, H, W, C)``, the labels ``(B,)``
    and the per-sample weights ``(B,)`` alike. ``lam`` is ``(B,)`` in [0, 1], ``partner`` a permutation of range(B)."""
    import tensorflow as tf

    lam = tf.cast(lam, tf.float32)
    mixed_images = lam[:, None, None, None] * images + (1.0 - lam[:, None, None, None]) * tf.gather(images, partner)
    mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, partner)
    mixed_weights = lam * weights + (1.0 - lam) * tf.gather(weights, partner)
    return mixed_images, mixed_labels, mixed_weights


def mixup_fn(alpha: float, class_weight: dict[int, float] | None = None, *, seed: int = 0) -> Any:
    """The batch function ``(x, y) -> (x, y, sample_weight)`` of mixup with ``lam ~ Beta(alpha, alpha)`` per sample
    and a random partner per sample; ``class_weight`` {0: w0, 1: w1} becomes per-sample weights mixed like the labels
    (Keras's ``class_weight`` would cast a mixed label to an integer class). Seeded: the same seed, the same draws.
    Raises ValueError for ``alpha <= 0``."""
    import keras
    import tensorflow as tf

    if not alpha > 0:
        raise ValueError(f"Mixup needs alpha > 0 (e.g. 0.2); got {alpha}.")
    generator = keras.random.SeedGenerator(seed + 11)
    w0, w1 = (float(class_weight[0]), float(class_weight[1])) if class_weight else (1.0, 1.0)

    def apply(x: Any, y: Any) -> tuple[Any, Any, Any]:
        count = tf.shape(y)[0]
        lam = keras.random.beta((count,), alpha, alpha, seed=generator)
        partner = tf.cast(tf.argsort(keras.random.uniform((count,), seed=generator)), tf.int32)
        y = tf.cast(y, tf.float32)
        return mixup_batch(x, y, y * w1 + (1.0 - y) * w0, lam, partner)

    return apply


def make_dataset(
    frame: pd.DataFrame,
    *,
    img_size: int,
    channels: int,
    batch_size: int = 32,
    shuffle: bool = False,
    augment: bool | str | AugmentConfig = False,
    balance: str = "none",
    seed: int = 0,
    cache: bool | str = True,
    repeat: bool = False,
    with_labels: bool = True,
    mixup: float = 0.0,
    class_weight: dict[int, float] | None = None,
) -> Any:
    """tf.data.Dataset of (images float32 ``(B, S, S, C)`` in [0, 255], labels float32 ``(B,)``) from index rows.

    ``cache=True`` keeps decoded uint8 images in memory (``str`` = a cache file). Over/undersampling is applied
    to the rows before caching (each distinct image is decoded once); class-weight is left to ``fit``. With
    ``mixup`` > 0 (after augmentation, :func:`mixup_fn`) the batches are (images, mixed labels, sample weights), the
    weights from ``class_weight`` mixed like the labels: pass ``class_weight=None`` to ``fit`` then.
    """
    import tensorflow as tf

    check_balance(balance)
    if frame.empty:
        raise ValueError("No images to load: the selected rows of the dataset index are empty.")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB); got {channels}.")
    rows = balance_frame(frame, balance, seed=seed) if shuffle or balance in {"oversample", "undersample"} else frame
    paths = rows["path"].astype(str).to_numpy()
    if "label" in rows:
        labels = rows["label"].to_numpy(dtype="float32")
    elif with_labels:
        raise ValueError("The rows have no 'label' column; pass with_labels=False to load images only.")
    else:
        labels = np.zeros(len(rows), dtype="float32")

    # Decode each distinct file once, cache it, then expand to the (possibly resampled) rows.
    inverse, unique_paths = pd.factorize(pd.Series(paths))
    unique_paths = np.asarray(unique_paths, dtype=str)
    images = tf.data.Dataset.from_tensor_slices(unique_paths).map(
        lambda p: decode_and_resize(p, img_size=img_size, channels=channels), num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if cache:
        images = images.cache(cache if isinstance(cache, str) else "")
    if len(unique_paths) == len(paths) and np.array_equal(inverse, np.arange(len(paths))):
        dataset = tf.data.Dataset.zip(images, tf.data.Dataset.from_tensor_slices(labels))
        dataset_rows = None
    else:
        # Materialise the decoded images once, then gather rows (oversampling repeats some).
        dataset_rows = inverse
        dataset = None

    if dataset_rows is not None:
        stacked = np.stack(list(images.as_numpy_iterator()))
        table = tf.constant(stacked)
        dataset = tf.data.Dataset.from_tensor_slices((dataset_rows.astype("int64"), labels)).map(
            lambda i, y: (tf.gather(table, i), y), num_parallel_calls=AUTOTUNE
        )
    if shuffle:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    augment_fn = augment_batch_fn(augment, seed=seed)
    if augment_fn is not None:
        dataset = dataset.map(lambda x, y: (augment_fn(x), y), num_parallel_calls=AUTOTUNE)
    if mixup:
        if not with_labels:
            raise ValueError("Mixup mixes labels; it needs with_labels=True.")
        dataset = dataset.map(mixup_fn(mixup, class_weight, seed=seed), num_parallel_calls=AUTOTUNE)
    if not with_labels:
        dataset = dataset.map(lambda x, y: x)
    return dataset.prefetch(AUTOTUNE)


def load_arrays(frame: pd.DataFrame, *, img_size: int, channels: int, batch_size: int = 64) -> np.ndarray:
    """All images of the rows as one float32 array ``(N, S, S, C)`` in [0, 255], in row order (no labels)."""
    dataset = make_dataset(
        frame, img_size=img_size, channels=channels, batch_size=batch_size, cache=False, with_labels=False
    )
    return np.concatenate(list(dataset.as_numpy_iterator()), axis=0)
