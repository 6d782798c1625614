"""Training: fit loop with callbacks, cached backbone features, evaluation, and atomic model artifacts.

One run (:func:`train`) goes: index -> pipeline -> zoo model -> fit (Adam, EarlyStopping with best weights
restored, ReduceLROnPlateau, best-val-loss checkpoint, BackupAndRestore, CSVLogger) -> scores for every
val and test image -> threshold chosen on **validation** by one rule -> metrics with bootstrap CIs ->
``models/.tmp-<name>-<random>/`` -> ``os.replace`` into ``models/<name>/``.

Transfer models train in two stages on CPU-friendly cached features:
1. *head*: the backbone is frozen, so its last feature map is computed once per image and cached on disk
   (``.cache/features/``, keyed by architecture, input size, weights source and the dataset's files);
   the head (global pooling, dropout, sigmoid) trains on it in seconds per epoch.
2. *finetune* (optional, ``finetune_epochs > 0``): the feature map at the input of the top blocks
   (e.g. Xception's block 13) is cached the same way, and blocks 13-14 + head train on it at a lower
   learning rate with batch-norm statistics frozen. The trained layers are the very layer objects of the
   full flat model, so the saved ``model.keras`` is the complete network taking raw pixels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from core import config

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1


def files_fingerprint(frame: pd.DataFrame) -> str:
    """sha1 over the sorted (relpath, file size) pairs of the rows: changes when files are added/removed/replaced."""
    digest = hashlib.sha1()
    for relpath, path in sorted(zip(frame["relpath"].astype(str), frame["path"].astype(str))):
        digest.update(f"{relpath}\t{os.path.getsize(path)}\n".encode())
    return digest.hexdigest()


def feature_cache_key(
    architecture: str, img_size: int, weights_source: str, layer_names: Sequence[str], frame: pd.DataFrame
) -> str:
    """Cache key of backbone features: model + input size + weights + cached layers + data fingerprint."""
    payload = json.dumps(
        {
            "v": FEATURE_CACHE_VERSION,
            "architecture": architecture,
            "img_size": int(img_size),
            "weights": weights_source,
            "layers": list(layer_names),
            "data": files_fingerprint(frame),
        },
        sort_keys=True,
    )
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
) -> dict[str, np.ndarray]:
    """Inputs of the named layers of a frozen ``model`` for every row, as float16 ``(N, h, w, c)`` in row order.

    Computed once and memory-mapped from ``<cache_dir>/features/<key>/<layer>.npy``; ``frame`` should be the
    whole index (all splits) so every run on the same data shares one cache.
    """
    import keras

    from core import pipeline

    cache_root = Path(cache_dir or config.CACHE_DIR) / "features"
    ordered = frame.sort_values("relpath")
    key = feature_cache_key(architecture, img_size, weights_source, layer_names, ordered)
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
        bar = _progress(total=len(ordered), desc=f"{architecture} features", unit="img", enabled=progress)
        start = 0
        for batch in dataset:
            values = extractor(batch, training=False)
            values = values if isinstance(values, (list, tuple)) else [values]
            if outputs is None:
                outputs = [
                    np.lib.format.open_memmap(
                        tmp / f"{name}.npy", mode="w+", dtype="float16",
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


def _progress(*, total: int, desc: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar (rate and ETA) on stderr, or a silent stand-in."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
THRESHOLD_RULE = "specificity"
THRESHOLD_TARGET = 0.95
THRESHOLD_RULE_TEXT = "highest validation sensitivity with validation specificity >= {target:.2f}"
"""The one documented operating-point rule, fixed before any test number was seen.

Why a specificity floor rather than F1: the dataset's own notes (data/README) say models trained on this
data over-call pneumonia on the official test images (different acquisition). A threshold that keeps 95% of
validation NORMAL films negative is the guard against that, at little cost in sensitivity where the
validation AUC is high. It is applied identically to every model.
"""

INTENDED_USE = (
    "Research and teaching demonstration: flags paediatric anterior-posterior chest X-rays that look like "
    "pneumonia, to compare models and study operating points. Not a diagnostic device; every output needs "
    "review by a qualified clinician."
)
LIMITATIONS = [
    "Trained and evaluated only on paediatric (age 1-5) anterior-posterior films from one centre "
    "(Guangzhou Women and Children's Medical Center, Kermany et al. 2018); adult, PA, lateral or other "
    "hospitals' films are out of distribution.",
    "The official test set was acquired differently from the training films; validation numbers "
    "(carved from train) are optimistic, and test numbers are the ones to quote.",
    "Two classes only (NORMAL / PNEUMONIA): other findings (effusion, tuberculosis, COVID-19, devices) "
    "are not recognised and may be called either way.",
    "Labels come from the dataset's folders (expert grading of the original study), not from "
    "microbiology; bacterial and viral pneumonia are merged.",
    "Confidence intervals resample images, not patients; they are slightly optimistic where one "
    "patient has several films.",
    "Not a medical device: not cleared or approved for clinical use.",
]
DATASET_PROVENANCE = (
    "Kermany, Zhang, Goldbaum (2018), 'Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images "
    "for Classification', Mendeley Data, doi:10.17632/rscbjbr9sj.2, CC BY 4.0; shipped resized to 224x224."
)

NIH_INTENDED_USE = (
    "Research and teaching demonstration: flags adult chest X-rays (NIH ChestX-ray14) whose report mentions "
    "pneumonia, to compare models and study operating points at a low prevalence. Not a diagnostic device; "
    "every output needs review by a qualified clinician."
)
NIH_LIMITATIONS = [
    "Trained and evaluated on NIH ChestX-ray14 (Wang et al. 2017, NIH Clinical Center): adult PA and AP films "
    "from one hospital; paediatric films and other hospitals' films are out of distribution.",
    "Labels are text-mined from radiology reports (estimated > 90% accurate), not read from the images; "
    "'Pneumonia' overlaps with infiltration and consolidation.",
    "Pneumonia prevalence is about 1%: PPV stays low at any useful sensitivity; read it next to the prevalence.",
    "Confidence intervals resample images, not patients; they are slightly optimistic where one "
    "patient has several films.",
    "Not a medical device: not cleared or approved for clinical use.",
]
NIH_PROVENANCE = (
    "Wang et al. (2017), 'ChestX-ray8: Hospital-scale Chest X-ray Database and Benchmarks', NIH Clinical "
    "Center; labels from Data_Entry_2017.csv ('Pneumonia' in Finding Labels)."
)
DATASET_TEXTS = {
    "kaggle": {"name": "Chest X-Ray Images (Pneumonia), Kermany et al. 2018 (paediatric, Guangzhou)",
               "provenance": DATASET_PROVENANCE, "intended_use": INTENDED_USE, "limitations": LIMITATIONS},
    "nih": {"name": "NIH ChestX-ray14 (adult, NIH Clinical Center)", "provenance": NIH_PROVENANCE,
            "intended_use": NIH_INTENDED_USE, "limitations": NIH_LIMITATIONS},
}
"""Name, provenance, intended use and limitations written in the card, by dataset layout."""


def dataset_texts(data_root: str | Path) -> dict:
    """The card texts for the dataset at `data_root` (Kaggle paediatric set unless the folder is NIH-layout)."""
    from core import data

    try:
        layout = data.detect_layout(data_root)
    except (ValueError, OSError):
        layout = "kaggle"
    return DATASET_TEXTS.get(layout, DATASET_TEXTS["kaggle"])


@dataclass
class TrainConfig:
    """Every option of a training run (train.py exposes each one with the same name and default)."""

    model: str = "cnn_reference"
    name: str | None = None
    data: str = field(default_factory=lambda: str(config.data_root()))
    img_size: int | None = None
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-3
    balance: str = "class-weight"
    augment: bool = False
    weights: str = "imagenet"
    dropout: float = 0.3
    finetune_epochs: int = 0
    finetune_learning_rate: float = 1e-4
    patience: int = 5
    seed: int = 42
    threshold_rule: str = THRESHOLD_RULE
    threshold_target: float | None = THRESHOLD_TARGET
    limit: int | None = None
    models_dir: str = field(default_factory=lambda: str(config.models_dir()))
    cache_dir: str = field(default_factory=lambda: str(config.CACHE_DIR))
    bootstrap: int = config.BOOTSTRAP_RESAMPLES
    progress: bool = True
    overwrite: bool = True
    data_format: str = "auto"  # "auto" | "kaggle" | "nih" (train.py --format)
    strategy: str = "none"  # "none" | "mirrored" | "multiworker" (core.distribute); batch_size is per replica
    pipeline: str = "auto"  # "memory" (decoded cache) | "streaming" (core.streaming) | "auto" (streaming if large or multiworker)

    def resolved_name(self) -> str:
        """The model folder name: --name, else '<model>-<size>' with dashes."""
        from core import zoo

        spec = zoo.get_spec(self.model)
        return self.name or f"{spec.name.replace('_', '-')}-{self.size()}"

    def size(self) -> int:
        """Input side in pixels (the architecture's default when not given)."""
        from core import zoo

        return int(self.img_size or zoo.get_spec(self.model).default_size)

    def threshold_rule_text(self) -> str:
        """Human text of the operating-point rule, e.g. 'highest validation sensitivity with ... >= 0.95'."""
        if self.threshold_rule == "specificity":
            return THRESHOLD_RULE_TEXT.format(target=self.threshold_target)
        if self.threshold_rule == "sensitivity":
            return f"highest threshold with validation sensitivity >= {self.threshold_target:.2f}"
        return {"f1": "maximal F1 on validation", "youden": "maximal Youden J on validation"}[self.threshold_rule]


@dataclass
class RunResult:
    """What :func:`train` produced: the final folder and the card written into it."""

    folder: Path
    card: dict
    model: Any = None  # the trained Keras model (on a non-chief worker, `folder` is where the chief writes)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def load_training_index(
    data_root: str | Path, *, limit: int | None = None, seed: int = 0, data_format: str = "auto"
) -> pd.DataFrame:
    """The patient-grouped index (core.data.load_index); ``limit`` keeps at most that many images per split and class."""
    from core import data

    if data_format != "auto" and data.detect_layout(data_root) != data_format:
        raise ValueError(
            f"--format {data_format} was asked, but {data_root} is a {data.detect_layout(data_root)}-layout folder. "
            "Pass the matching --format (or 'auto')."
        )
    index = data.load_index(data_root)
    for split in ("train", "val", "test"):
        if not (index["split"] == split).any():
            raise ValueError(f"The dataset at {data_root} has no '{split}' images; it needs train/ and test/ folders.")
    if limit:
        parts = []
        for _, group in index.groupby(["split", "label"], sort=True):
            parts.append(group.sample(n=min(limit, len(group)), random_state=seed) if len(group) > limit else group)
        index = pd.concat(parts).sort_values("relpath").reset_index(drop=True)
    return index.reset_index(drop=True)


def dataset_summary(index: pd.DataFrame, data_root: str | Path) -> dict:
    """The card's dataset section: name, root, fingerprint, provenance, split seed, images/patients per split."""
    from core import data

    try:
        fingerprint = data.dataset_fingerprint(data_root)
    except Exception as error:  # a fingerprint is informative only; never fail a finished run on it
        log.warning("Dataset fingerprint failed: %s", error)
        fingerprint = files_fingerprint(index)
    root = Path(data_root).resolve()
    try:
        root_text = root.relative_to(config.PROJECT_ROOT).as_posix()
    except ValueError:
        root_text = str(root)
    return {
        "name": dataset_texts(data_root)["name"],
        "root": root_text,
        "fingerprint": fingerprint,
        "provenance": dataset_texts(data_root)["provenance"],
        "split_seed": config.SPLIT_SEED,
        "validation_fraction": config.VALIDATION_FRACTION,
        "images_per_split": {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
        "patients_per_split": {s: int(index.loc[index["split"] == s, "patient"].nunique()) for s in ("train", "val", "test")},
        "images_per_class": {
            s: {"NORMAL": int(((index["split"] == s) & (index["label"] == 0)).sum()),
                "PNEUMONIA": int(((index["split"] == s) & (index["label"] == 1)).sum())}
            for s in ("train", "val", "test")
        },
    }


# --------------------------------------------------------------------------------------------------
# Fitting
# --------------------------------------------------------------------------------------------------
def progress_callback(total_epochs: int, desc: str, enabled: bool) -> Any:
    """A Keras callback showing one tqdm bar over all epochs of a stage (loss, val_loss, val_auc, ETA); logs each epoch."""
    import keras

    class ProgressBar(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.bar = _progress(total=total_epochs, desc=desc, unit="epoch", enabled=enabled)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            if self.bar.n < epoch:
                self.bar.update(epoch - self.bar.n)  # resumed run: skip the epochs already done

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs or {}
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items() if k in {"loss", "val_loss", "val_auc"}})
            self.bar.update(1)
            log.info("%s epoch %d: %s", desc, epoch + 1, {k: round(float(v), 5) for k, v in logs.items()})

        def on_train_end(self, logs: dict | None = None) -> None:
            self.bar.close()

    return ProgressBar()


def _compile(model: Any, learning_rate: float) -> None:
    """Adam + binary cross-entropy, with AUC and accuracy tracked per epoch."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )


def _readable_h5(path: Path) -> bool:
    """True when `path` opens as an HDF5 file whose groups can be listed (a file torn by a kill cannot)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            handle.visit(lambda name: None)
        return True
    except (OSError, RuntimeError, ValueError):
        return False


def _discard_torn_state(backup_dir: Path, best_file: Path) -> None:
    """Remove resume state that a kill tore mid-write, so the stage restarts instead of failing on every rerun."""
    backup_weights = backup_dir / "latest.weights.h5"
    if backup_weights.exists() and not _readable_h5(backup_weights):
        log.warning("The resume backup %s was torn by an interrupted write; restarting this stage", backup_weights)
        shutil.rmtree(backup_dir, ignore_errors=True)
    if best_file.exists() and not _readable_h5(best_file):
        log.warning("The best-weights checkpoint %s was torn by an interrupted write; discarding it", best_file)
        best_file.unlink()


def fit_stage(
    model: Any,
    train_data: Any,
    val_data: Any,
    *,
    stage: str,
    epochs: int,
    learning_rate: float,
    work_dir: Path,
    patience: int,
    class_weight: dict[int, float] | None,
    progress: bool,
    steps_per_epoch: int | None = None,
) -> pd.DataFrame:
    """Fit one stage with Adam, EarlyStopping, ReduceLROnPlateau, best-val-loss checkpoint, BackupAndRestore, CSVLogger.

    A run killed mid-stage and started again with the same ``work_dir`` resumes after the last finished
    epoch. On return the model holds the best-validation-loss weights; the stage's history is returned.
    """
    import keras

    work_dir.mkdir(parents=True, exist_ok=True)
    history_file = work_dir / f"history-{stage}.csv"
    best_file = work_dir / f"best-{stage}.weights.h5"
    done_file = work_dir / f"done-{stage}"
    _compile(model, learning_rate)
    _discard_torn_state(work_dir / f"backup-{stage}", best_file)
    if done_file.exists() and best_file.exists():
        log.info("Stage %s already finished in %s; loading its best weights", stage, work_dir)
        model.load_weights(best_file)
        return pd.read_csv(history_file)
    best_so_far = None
    if history_file.exists() and best_file.exists():
        previous = pd.read_csv(history_file)
        if "val_loss" in previous and len(previous):
            best_so_far = float(previous["val_loss"].min())
    callbacks = [
        keras.callbacks.BackupAndRestore(str(work_dir / f"backup-{stage}"), delete_checkpoint=True),
        keras.callbacks.ModelCheckpoint(
            str(best_file), monitor="val_loss", save_best_only=True, save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6),
        keras.callbacks.CSVLogger(str(history_file), append=True),
        progress_callback(epochs, stage, progress),
    ]
    model.fit(
        train_data,
        validation_data=val_data,
        epochs=epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=0,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    if best_file.exists():
        model.load_weights(best_file)
    done_file.touch()
    history = pd.read_csv(history_file)
    # A resumed epoch may have been logged twice (killed after CSVLogger wrote it, before the backup): keep the last.
    return history.drop_duplicates("epoch", keep="last").reset_index(drop=True)


def _feature_dataset(features: np.ndarray, labels: np.ndarray, *, batch_size: int, shuffle: bool, seed: int, rows: np.ndarray | None = None) -> Any:
    """tf.data over cached float16 feature maps (cast to float32 per batch), optionally resampled rows."""
    import tensorflow as tf

    order = np.arange(len(labels)) if rows is None else rows
    dataset = tf.data.Dataset.from_tensor_slices(order)
    if shuffle:
        dataset = dataset.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
    table = tf.constant(features)
    label_table = tf.constant(labels.astype("float32"))
    dataset = dataset.batch(batch_size).map(
        lambda i: (tf.cast(tf.gather(table, i), tf.float32), tf.gather(label_table, i)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _balanced_rows(labels: np.ndarray, balance: str, seed: int) -> np.ndarray | None:
    """Row numbers after over/undersampling (None = all rows once), using pipeline.balance_frame."""
    from core import pipeline

    if balance not in {"oversample", "undersample"}:
        return None
    frame = pd.DataFrame({"row": np.arange(len(labels)), "label": labels.astype(int)})
    return pipeline.balance_frame(frame, balance, seed=seed)["row"].to_numpy()


def _class_weight(labels: np.ndarray, balance: str) -> dict[int, float] | None:
    """Balanced class weights for ``class-weight``, else None."""
    from core import pipeline

    return pipeline.class_weights(labels) if balance == "class-weight" else None


def _set_finetune_trainable(model: Any, first_layer: str) -> list[str]:
    """Freeze every layer before ``first_layer``; unfreeze the rest except batch norms (statistics stay frozen)."""
    started = False
    trainable = []
    for layer in model.layers:
        if layer.name == first_layer:
            started = True
        is_bn = type(layer).__name__ == "BatchNormalization"
        layer.trainable = started and not is_bn and not layer.name.startswith("preprocess_")
        if layer.trainable and layer.weights:
            trainable.append(layer.name)
    return trainable


def _train_transfer(
    model: Any, cfg: TrainConfig, index: pd.DataFrame, weights_source: str, work_dir: Path
) -> list[pd.DataFrame]:
    """Head on cached final feature maps, then (optionally) top blocks + head on cached mid-level maps."""
    import keras

    from core import zoo

    spec = zoo.get_spec(cfg.model)
    head_layer = zoo.head_input_layer(model)
    layer_names = [head_layer.name]
    if cfg.finetune_epochs > 0:
        layer_names.insert(0, zoo.finetune_input_layer(model, cfg.model).name)
    # Features of every image of the index are cached once and shared by every run on the same data.
    cache_frame = index
    features = cached_layer_inputs(
        model, spec.name, cache_frame, layer_names=layer_names, img_size=cfg.size(), channels=spec.channels,
        weights_source=weights_source, cache_dir=Path(cfg.cache_dir), progress=cfg.progress,
    )
    position = pd.Series(np.arange(len(cache_frame)), index=cache_frame["relpath"].astype(str).to_numpy())
    train_rows = position.loc[index.loc[index["split"] == "train", "relpath"].astype(str)].to_numpy()
    val_rows = position.loc[index.loc[index["split"] == "val", "relpath"].astype(str)].to_numpy()
    y_train = index.loc[index["split"] == "train", "label"].to_numpy()
    y_val = index.loc[index["split"] == "val", "label"].to_numpy()
    histories = []

    def stage_data(name: str) -> tuple[Any, Any]:
        values = features[name]
        train = _feature_dataset(
            np.ascontiguousarray(values[train_rows]), y_train, batch_size=cfg.batch_size, shuffle=True,
            seed=cfg.seed, rows=_balanced_rows(y_train, cfg.balance, cfg.seed),
        )
        val = _feature_dataset(np.ascontiguousarray(values[val_rows]), y_val, batch_size=128, shuffle=False, seed=cfg.seed)
        return train, val

    for layer in model.layers:
        layer.trainable = layer.name.startswith(zoo.HEAD_LAYER_PREFIX) or layer.name == zoo.OUTPUT_LAYER
    head = keras.Model(head_layer.input, model.output, name=f"{spec.name}_head")
    train_data, val_data = stage_data(head_layer.name)
    history = fit_stage(
        head, train_data, val_data, stage="head", epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        work_dir=work_dir, patience=cfg.patience, class_weight=_class_weight(y_train, cfg.balance), progress=cfg.progress,
    )
    histories.append(history.assign(stage="head"))
    if cfg.finetune_epochs > 0:
        first = zoo.finetune_input_layer(model, cfg.model)
        unfrozen = _set_finetune_trainable(model, first.name)
        log.info("Fine-tuning %d layers from %s at learning rate %g", len(unfrozen), first.name, cfg.finetune_learning_rate)
        top = keras.Model(first.input, model.output, name=f"{spec.name}_top")
        del train_data, val_data
        train_data, val_data = stage_data(first.name)
        history = fit_stage(
            top, train_data, val_data, stage="finetune", epochs=cfg.finetune_epochs,
            learning_rate=cfg.finetune_learning_rate, work_dir=work_dir, patience=cfg.patience,
            class_weight=_class_weight(y_train, cfg.balance), progress=cfg.progress,
        )
        histories.append(history.assign(stage="finetune"))
    for layer in model.layers:
        layer.trainable = True
    return histories


def _train_end_to_end(model: Any, cfg: TrainConfig, index: pd.DataFrame, work_dir: Path) -> list[pd.DataFrame]:
    """MLP / CNN: images through the tf.data pipeline (augmentation and balancing as configured)."""
    from core import pipeline, streaming, zoo

    spec = zoo.get_spec(cfg.model)
    train_frame = pipeline.select_split(index, "train")
    val_frame = pipeline.select_split(index, "val")
    if streaming.use_streaming(cfg.pipeline, n_images=len(train_frame), strategy=cfg.strategy):
        train_data, val_data, steps = streaming.training_datasets(
            train_frame, val_frame, img_size=cfg.size(), channels=spec.channels, global_batch=cfg.batch_size,
            balance=cfg.balance, augment=cfg.augment, seed=cfg.seed,
        )
        history = fit_stage(
            model, train_data, val_data, stage="train", epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            work_dir=work_dir, patience=cfg.patience, class_weight=None, progress=cfg.progress, steps_per_epoch=steps,
        )
        return [history.assign(stage="train")]
    train_data = pipeline.make_dataset(
        train_frame, img_size=cfg.size(), channels=spec.channels, batch_size=cfg.batch_size, shuffle=True,
        augment=cfg.augment, balance=cfg.balance, seed=cfg.seed,
    )
    val_data = pipeline.make_dataset(val_frame, img_size=cfg.size(), channels=spec.channels, batch_size=64)
    history = fit_stage(
        model, train_data, val_data, stage="train", epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        work_dir=work_dir, patience=cfg.patience,
        class_weight=_class_weight(train_frame["label"].to_numpy(), cfg.balance), progress=cfg.progress,
    )
    return [history.assign(stage="train")]


# --------------------------------------------------------------------------------------------------
# Evaluation and artifacts
# --------------------------------------------------------------------------------------------------
def score_frame(model: Any, frame: pd.DataFrame, *, img_size: int, channels: int, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """The model's PNEUMONIA probabilities for the rows' images, float64 ``(N,)``, in row order."""
    from core import pipeline

    dataset = pipeline.make_dataset(
        frame, img_size=img_size, channels=channels, batch_size=batch_size, cache=False, with_labels=False
    )
    bar = _progress(total=len(frame), desc="scoring", unit="img", enabled=progress)
    scores = []
    for batch in dataset:
        scores.append(np.asarray(model(batch, training=False)).reshape(-1))
        bar.update(int(batch.shape[0]))
    bar.close()
    return np.concatenate(scores).astype("float64")


def predictions_frame(index: pd.DataFrame, scores: np.ndarray) -> pd.DataFrame:
    """predictions.csv rows: path (dataset relpath), split, label, score, for the given index rows."""
    return pd.DataFrame(
        {
            "path": index["relpath"].astype(str).to_numpy(),
            "split": index["split"].astype(str).to_numpy(),
            "label": index["label"].astype(int).to_numpy(),
            "score": np.clip(scores, 0.0, 1.0),
        }
    )


def evaluate_predictions(
    predictions: pd.DataFrame, *, rule: str, target: float | None, n_resamples: int, seed: int = 0
) -> tuple[float, dict[str, dict[str, dict[str, float]]]]:
    """Threshold chosen on the val rows by ``rule``; metrics with bootstrap CIs for val and test at it."""
    from core import metrics

    val = predictions[predictions["split"] == "val"]
    threshold = metrics.choose_threshold(val["label"].to_numpy(), val["score"].to_numpy(), rule, target=target)
    results = {}
    for split in ("val", "test"):
        rows = predictions[predictions["split"] == split]
        results[split] = metrics.summarize_with_ci(
            rows["label"].to_numpy(), rows["score"].to_numpy(), threshold, n_resamples=n_resamples, seed=seed
        )
    return float(threshold), results


def _versions() -> dict[str, str]:
    """Library versions recorded in the card."""
    import keras
    import sklearn
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def render_card_markdown(card: dict) -> str:
    """card.md: the same content as card.json for people (threshold, metrics with CIs, data, limitations)."""
    from core import metrics

    lines = [f"# {card['display_name']} (`{card['name']}`)", ""]
    inp = card["input"]
    lines += [
        f"- **Architecture:** {card['architecture']}; input {inp['height']}x{inp['width']}x{inp['channels']}, "
        f"raw pixels 0-255; preprocessing inside the model: {inp['preprocessing']}",
        f"- **Weights:** {card['weights_source']}",
        f"- **Parameters:** {card['parameters']['total']:,} ({card['parameters']['trainable']:,} trainable)",
        f"- **Operating threshold:** {card['threshold']['value']:.4f}, chosen on **{card['threshold']['chosen_on']}** "
        f"by the rule: {card['threshold']['rule']}",
        f"- **Training:** {card['training']['epochs_run']} epochs, {card['training']['seconds'] / 60:.1f} min, "
        f"finished {card['training']['finished']}",
        "",
        "## Metrics at the operating threshold (95% bootstrap CIs)",
        "",
        "| metric | validation | test (official 624 images) |",
        "| --- | --- | --- |",
    ]
    for key in metrics.METRIC_KEYS:
        lines.append(
            f"| {key} | {metrics.format_ci(card['metrics']['val'][key])} | {metrics.format_ci(card['metrics']['test'][key])} |"
        )
    data = card["dataset"]
    lines += [
        "",
        "## Data",
        "",
        f"{data['name']} at `{data['root']}` (fingerprint `{data['fingerprint']}`).",
        f"Provenance: {data['provenance']}",
        f"Validation: {data['validation_fraction']:.0%} of train, grouped by patient, seed {data['split_seed']}.",
        "",
        "| split | images | patients |",
        "| --- | --- | --- |",
    ]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | {data['images_per_split'][split]} | {data['patients_per_split'][split]} |")
    lines += ["", "## Intended use", "", card["intended_use"], "", "## Limitations", ""]
    lines += [f"- {item}" for item in card["limitations"]]
    lines += ["", "## Training configuration", "", "```json", json.dumps(card["training"]["config"], indent=2), "```", ""]
    return "\n".join(lines)


def write_artifacts(
    folder: Path, *, model: Any, card: dict, history: pd.DataFrame, predictions: pd.DataFrame
) -> None:
    """Write model.keras, history.csv, predictions.csv, card.json and card.md into ``folder`` (which must exist)."""
    model.save(folder / "model.keras")
    history.to_csv(folder / "history.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)  # full precision: the card agrees exactly
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    (folder / "card.md").write_text(render_card_markdown(card))


def _json_default(value: Any) -> Any:
    """JSON for numpy scalars and paths."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Cannot write {type(value).__name__} to JSON")


def publish(tmp_folder: Path, final_folder: Path, *, overwrite: bool = True) -> Path:
    """Move a complete ``models/.tmp-*`` folder to ``models/<name>``; an old model of that name is replaced."""
    import shutil

    if final_folder.exists():
        if not overwrite:
            raise FileExistsError(f"{final_folder} exists; pass --overwrite or choose another --name.")
        trash = final_folder.parent / f".old-{final_folder.name}-{os.getpid()}"
        os.replace(final_folder, trash)
        os.replace(tmp_folder, final_folder)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp_folder, final_folder)
    return final_folder


def build_card(
    *, cfg: TrainConfig, model: Any, weights_source: str, dataset: dict, threshold: float,
    results: dict, seconds: float, epochs_run: int, extra: dict | None = None,
) -> dict:
    """The card.json content (docs/ARCHITECTURE.md keys, plus a few extra informative ones)."""
    import datetime

    from core import zoo

    spec = zoo.get_spec(cfg.model)
    texts = next((t for t in DATASET_TEXTS.values() if t["name"] == dataset.get("name")), DATASET_TEXTS["kaggle"])
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    run_config = {k: v for k, v in asdict(cfg).items() if k not in {"progress", "models_dir", "cache_dir", "overwrite"}}
    run_config["img_size"] = cfg.size()
    card = {
        "name": cfg.resolved_name(),
        "display_name": f"{spec.display_name}, {cfg.size()} px",
        "architecture": spec.name,
        "input": {"height": cfg.size(), "width": cfg.size(), "channels": spec.channels, "preprocessing": spec.preprocessing},
        "weights_source": weights_source,
        "parameters": {"total": int(model.count_params()), "trainable": trainable},
        "dataset": dataset,
        "training": {
            "config": run_config,
            "seconds": round(float(seconds), 1),
            "epochs_run": int(epochs_run),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "threshold": {
            "value": float(threshold), "rule": cfg.threshold_rule_text(), "chosen_on": "val",
            "rule_id": cfg.threshold_rule, "target": cfg.threshold_target,
        },
        "metrics": results,
        "intended_use": texts["intended_use"],
        "limitations": texts["limitations"],
        "versions": _versions(),
    }
    card.update(extra or {})
    return card


def train(cfg: TrainConfig) -> RunResult:
    """Run one training end to end and publish ``models/<name>/`` atomically; returns the folder and card.

    Under ``cfg.strategy`` the model is built, trained and saved inside the strategy's scope, at a global
    batch of ``cfg.batch_size`` per replica; only the chief writes to ``cfg.models_dir`` (core.distribute).
    """
    from dataclasses import replace

    from core import distribute

    strategy = distribute.make_strategy(distribute.check_strategy(cfg.strategy))  # first: before TensorFlow runs
    info = distribute.cluster_info() if cfg.strategy == "multiworker" else distribute.ClusterInfo(None, 0, 1)
    run_cfg = replace(cfg, batch_size=distribute.global_batch_size(cfg.batch_size, strategy.num_replicas_in_sync))
    distribution = {"strategy": cfg.strategy, "replicas": int(strategy.num_replicas_in_sync), "workers": info.num_workers,
                    "per_replica_batch_size": cfg.batch_size, "global_batch_size": run_cfg.batch_size}
    with strategy.scope(), distribute.artifact_dir(cfg.models_dir, info) as models_dir:
        result = _train(run_cfg, Path(models_dir), card_cfg=cfg, distribution=distribution)
    if not info.is_chief:
        result.folder = Path(cfg.models_dir) / cfg.resolved_name()
    return result


def _train(cfg: TrainConfig, models_dir: Path, *, card_cfg: TrainConfig, distribution: dict) -> RunResult:
    """The body of :func:`train` in the strategy's scope: ``cfg`` has the global batch, ``card_cfg`` the user's."""
    import shutil
    import time
    import uuid

    import keras

    from core import pipeline, weights, zoo

    pipeline.check_balance(cfg.balance)
    spec = zoo.get_spec(cfg.model)
    name = cfg.resolved_name()
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"Model name {name!r} must be a plain folder name (no '/', not starting with '.').")
    models_dir.mkdir(parents=True, exist_ok=True)
    work_dir = models_dir / f".backup-{name}"  # resumable state (BackupAndRestore, best checkpoints)
    start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    index = load_training_index(cfg.data, limit=cfg.limit, seed=cfg.seed, data_format=cfg.data_format)
    log.info("Training %s (%s) on %s", name, spec.name, {s: int((index['split'] == s).sum()) for s in ('train', 'val', 'test')})
    weights_source = weights.resolve_weights(spec.name, cfg.weights).source if spec.family == "transfer" else "none (trained from scratch)"
    model = zoo.build_model(spec.name, img_size=cfg.size(), weights=cfg.weights, dropout=cfg.dropout, seed=cfg.seed)
    if spec.family == "transfer":
        histories = _train_transfer(model, cfg, index, weights_source, work_dir)
    else:
        histories = _train_end_to_end(model, cfg, index, work_dir)
    history = pd.concat(histories, ignore_index=True)
    evaluated = index[index["split"].isin(["val", "test"])].reset_index(drop=True)
    scores = score_frame(model, evaluated, img_size=cfg.size(), channels=spec.channels, progress=cfg.progress)
    predictions = predictions_frame(evaluated, scores)
    threshold, results = evaluate_predictions(
        predictions, rule=cfg.threshold_rule, target=cfg.threshold_target, n_resamples=cfg.bootstrap, seed=cfg.seed
    )
    card = build_card(
        cfg=card_cfg, model=model, weights_source=weights_source, dataset=dataset_summary(index, cfg.data),
        threshold=threshold, results=results, seconds=time.time() - start, epochs_run=len(history),
        extra={"distribution": distribution},
    )
    tmp = models_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        write_artifacts(tmp, model=model, card=card, history=history, predictions=predictions)
        final = publish(tmp, models_dir / name, overwrite=cfg.overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(work_dir, ignore_errors=True)
    log.info("Wrote %s: test AUC %.3f, threshold %.3f", final, results["test"]["roc_auc"]["value"], threshold)
    return RunResult(final, card, model)


def reevaluate(folder: Path | str, *, n_resamples: int | None = None) -> dict:
    """Recompute a model folder's threshold and metrics from its predictions.csv with the card's rule; rewrite the card.

    Useful after a change of metric code; never looks at anything but the stored scores.
    """
    folder = Path(folder)
    card = json.loads((folder / "card.json").read_text())
    predictions = pd.read_csv(folder / "predictions.csv", dtype={"path": str, "split": str})
    rule = card["threshold"].get("rule_id", THRESHOLD_RULE)
    target = card["threshold"].get("target", THRESHOLD_TARGET)
    resamples = n_resamples or int(card["training"]["config"].get("bootstrap", config.BOOTSTRAP_RESAMPLES))
    seed = int(card["training"]["config"].get("seed", 0))
    threshold, results = evaluate_predictions(predictions, rule=rule, target=target, n_resamples=resamples, seed=seed)
    card["threshold"]["value"] = threshold
    card["metrics"] = results
    (folder / "card.json").write_text(json.dumps(card, indent=2, default=_json_default) + "\n")
    (folder / "card.md").write_text(render_card_markdown(card))
    return card


# --------------------------------------------------------------------------------------------------
# Ensembles
# --------------------------------------------------------------------------------------------------
ENSEMBLE_RULE_TEXT = (
    "greedy forward selection (Caruana et al. 2004) of the candidates, each added while it lowers the "
    "validation Brier score of the mean probability"
)


def select_ensemble_members(candidates: Sequence[str], models_dir: Path | str) -> list[str]:
    """Members chosen on validation only: start from the lowest-Brier model, add the one that lowers the mean's Brier most.

    Reads each candidate's stored validation scores (predictions.csv); stops when no candidate improves.
    """
    from core import registry

    val_scores = {}
    labels = None
    for name in candidates:
        rows = registry.load_predictions(Path(models_dir) / name, "val").sort_values("path")
        if labels is None:
            labels, paths = rows["label"].to_numpy(), rows["path"].to_numpy()
        elif not np.array_equal(rows["path"].to_numpy(), paths):
            raise ValueError(f"{name} was validated on other images than {candidates[0]}; retrain it on the same data.")
        val_scores[name] = rows["score"].to_numpy()

    def brier(names: list[str]) -> float:
        mean = np.mean([val_scores[n] for n in names], axis=0)
        return float(np.mean((mean - labels) ** 2))

    chosen = [min(val_scores, key=lambda n: brier([n]))]
    while True:
        remaining = [n for n in val_scores if n not in chosen]
        if not remaining:
            break
        best = min(remaining, key=lambda n: brier(chosen + [n]))
        if brier(chosen + [best]) >= brier(chosen):
            break
        chosen.append(best)
    log.info("Ensemble members chosen on validation: %s (val Brier %.4f)", chosen, brier(chosen))
    return chosen


def train_ensemble(
    candidates: Sequence[str],
    *,
    name: str = "ensemble",
    data: str | Path | None = None,
    models_dir: str | Path | None = None,
    img_size: int = 224,
    select: bool = True,
    bootstrap: int = config.BOOTSTRAP_RESAMPLES,
    seed: int = 42,
    progress: bool = True,
    limit: int | None = None,
) -> RunResult:
    """Average shipped models into one model.keras (members chosen on validation), evaluate and publish it atomically."""
    import shutil
    import time
    import uuid

    from core import registry, zoo

    start = time.time()
    models_dir = Path(models_dir or config.models_dir())
    data = str(data or config.data_root())
    members = select_ensemble_members(candidates, models_dir) if select else list(candidates)
    if len(members) < 2:
        raise ValueError(
            f"Validation selection kept only {members}: no other candidate improves it, so no ensemble is written."
        )
    member_cards = {m: registry.load_card(models_dir / m) for m in members}
    model = zoo.build_ensemble([registry.load_keras_model(models_dir / m) for m in members], img_size=img_size, name="ensemble")
    index = load_training_index(data, limit=limit, seed=seed)
    evaluated = index[index["split"].isin(["val", "test"])].reset_index(drop=True)
    scores = score_frame(model, evaluated, img_size=img_size, channels=3, progress=progress)
    predictions = predictions_frame(evaluated, scores)
    cfg = TrainConfig(model="xception", name=name, data=data, img_size=img_size, bootstrap=bootstrap, seed=seed, limit=limit)
    threshold, results = evaluate_predictions(
        predictions, rule=cfg.threshold_rule, target=cfg.threshold_target, n_resamples=bootstrap, seed=seed
    )
    card = build_card(
        cfg=cfg, model=model, weights_source="; ".join(f"{m}: {c['weights_source']}" for m, c in member_cards.items()),
        dataset=dataset_summary(index, data), threshold=threshold, results=results,
        seconds=time.time() - start, epochs_run=0,
    )
    card.update(
        {
            "display_name": f"Ensemble (mean of {len(members)} models), {img_size} px",
            "architecture": "ensemble",
            "input": {
                "height": img_size, "width": img_size, "channels": 3,
                "preprocessing": "RGB raw [0, 255]; each member's own resize / grey conversion / preprocessing as layers",
            },
            "members": members,
            "member_selection": {"candidates": list(candidates), "rule": ENSEMBLE_RULE_TEXT if select else "given", "chosen_on": "val"},
        }
    )
    card["training"]["config"] = {
        "members": members, "candidates": list(candidates), "img_size": img_size, "seed": seed, "bootstrap": bootstrap, "limit": limit,
    }
    tmp = models_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        history = pd.DataFrame({"epoch": [], "loss": [], "val_loss": []})
        write_artifacts(tmp, model=model, card=card, history=history, predictions=predictions)
        (tmp / "history.csv").unlink()  # nothing was trained: no history
        final = publish(tmp, models_dir / name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RunResult(final, card)
