"""The fit loop: Adam + (label-smoothed) binary cross-entropy, early stopping, checkpoints, resumable stages.

:func:`fit_stage` fits one stage (the whole network, a transfer model's head, or its top blocks) with
EarlyStopping (best weights restored), ReduceLROnPlateau, a best-val-loss checkpoint, BackupAndRestore and a
CSV log, so a killed run resumes after its last finished epoch. Helpers build tf.data datasets over cached
feature maps and the class balancing of a stage.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.progress import progress_bar

log = logging.getLogger(__name__)


def progress_callback(total_epochs: int, desc: str, enabled: bool) -> Any:
    """A Keras callback showing one tqdm bar over all epochs of a stage (loss, val_loss, val_auc, ETA); logs each epoch."""
    import keras

    class ProgressBar(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict | None = None) -> None:
            self.bar = progress_bar(total=total_epochs, desc=desc, unit="epoch", enabled=enabled)

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


def _compile(model: Any, learning_rate: float, label_smoothing: float = 0.0) -> None:
    """Adam + binary cross-entropy (optionally label-smoothed), with AUC and accuracy tracked per epoch."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
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
    """Repair resume state that a kill tore mid-write: fall back to the previous epoch's backup (BackupAndRestore's
    double checkpoint, ``*.bkp``) when it is readable, else remove the backup so the stage restarts."""
    backup_weights = backup_dir / "latest.weights.h5"
    if backup_weights.exists() and not _readable_h5(backup_weights):
        previous = backup_dir / "latest.weights.h5.bkp"
        previous_metadata = backup_dir / "training_metadata.json.bkp"
        if previous.exists() and _readable_h5(previous) and previous_metadata.exists():
            log.warning("The resume backup %s was torn by an interrupted write; resuming from the epoch before", backup_weights)
            shutil.copyfile(previous, backup_weights)
            shutil.copyfile(previous_metadata, backup_dir / "training_metadata.json")
        else:
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
    label_smoothing: float = 0.0,
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
    _compile(model, learning_rate, label_smoothing)
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
        keras.callbacks.ModelCheckpoint(
            str(best_file),
            monitor="val_loss",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=best_so_far,
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6),
        # The epoch's row (with the learning rate ReduceLROnPlateau just logged) is written and flushed before the
        # backup that marks the epoch done: a kill between the two redoes the epoch (its duplicate row is dropped
        # below) instead of losing the epoch's row from the history.
        keras.callbacks.CSVLogger(str(history_file), append=True),
        # double_checkpoint keeps the previous epoch's backup (*.bkp), so a kill that tears this epoch's resumes from it.
        keras.callbacks.BackupAndRestore(str(work_dir / f"backup-{stage}"), delete_checkpoint=True, double_checkpoint=True),
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


def feature_dataset(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    rows: np.ndarray | None = None,
) -> Any:
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


def balanced_rows(labels: np.ndarray, balance: str, seed: int) -> np.ndarray | None:
    """Row numbers after over/undersampling (None = all rows once), using pipeline.balance_frame."""
    from core.data import pipeline

    if balance not in {"oversample", "undersample"}:
        return None
    frame = pd.DataFrame({"row": np.arange(len(labels)), "label": labels.astype(int)})
    return pipeline.balance_frame(frame, balance, seed=seed)["row"].to_numpy()


def class_weight_for(labels: np.ndarray, balance: str) -> dict[int, float] | None:
    """Balanced class weights for ``class-weight``, else None."""
    from core.data import pipeline

    return pipeline.class_weights(labels) if balance == "class-weight" else None


def set_finetune_trainable(model: Any, first_layer: str) -> list[str]:
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
