"""Training: one run from the dataset index to a published model folder.

One run (:func:`train`) goes: index -> pipeline -> zoo model -> fit (core.training.fitting: Adam, EarlyStopping with best
weights restored, ReduceLROnPlateau, best-val-loss checkpoint, BackupAndRestore, CSVLogger) -> scores for every
val and test image -> threshold chosen on **validation** by one rule (core.evaluation) -> metrics with bootstrap
CIs -> card (core.models.cards) -> ``models/.tmp-<name>-<random>/`` -> ``os.replace`` into ``models/<name>/``.

Transfer models train in two stages on CPU-friendly cached features (core.training.features):
1. *head*: the backbone is frozen, so its last feature map is computed once per image and cached on disk;
   the head (global pooling, dropout, sigmoid) trains on it in seconds per epoch. With ``augment_views`` the
   features of that many randomly augmented views of each training film are cached too (acquisition changes).
2. *finetune* (optional, ``finetune_epochs > 0``): the feature map at the input of the top blocks
   (e.g. Xception's block 13) is cached the same way, and blocks 13-14 + head train on it at a lower
   learning rate with batch-norm statistics frozen. The trained layers are the very layer objects of the
   full flat model, so the saved ``model.keras`` is the complete network taking raw pixels.
   With ``end_to_end`` the second stage instead trains *every* layer (batch-norm statistics included) on pixels
   through the tf.data pipeline, with the run's augmentation drawn afresh for every batch (the acquisition recipe
   on an ImageNet backbone); only a backbone light enough for this CPU makes that affordable (bench/bench_transfer_step.py).

Other modules: core.training.features (feature cache), core.training.fitting (fit loop), core.evaluation (scores, threshold,
metrics, re-evaluation), core.models.cards (card texts, card.json/card.md, atomic publish), core.training.ensembles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.models import cards
from core import config
from core.evaluation import evaluate as evaluation
from core.training import features, fitting

log = logging.getLogger(__name__)


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
    augment: bool | str = False  # False | True (= "reference") | a pipeline.AUGMENT_PRESETS name, e.g. "acquisition"
    normalize: str = "none"  # "none" | "per-image" (zoo.NORMALIZATIONS): standardisation inside the model
    framing: str = "none"  # "none" | "crop-borders" (core.imaging.framing.FRAMINGS): crop to the content box inside the model
    label_smoothing: float = 0.0  # targets 0/1 -> ls/2, 1 - ls/2 (keeps validation scores off 0 and 1)
    mixup: float = 0.0  # > 0: mixup of training image pairs and labels, lam ~ Beta(mixup, mixup) (pixel models only)
    threshold_views: int = 0  # validation films also scored under this many acquisition-perturbed views for the rule
    augment_views: int = 0  # transfer models: cached features of this many augmented views of each training film
    weights: str = "imagenet"
    dropout: float = 0.3
    finetune_epochs: int = 0
    finetune_learning_rate: float = 1e-4
    end_to_end: bool = False  # transfer models: fine-tune every layer on augmented pixels (tf.data), not cached features
    patience: int = 5
    seed: int = 42
    threshold_rule: str = cards.THRESHOLD_RULE
    threshold_target: float | None = cards.THRESHOLD_TARGET
    limit: int | None = None
    models_dir: str = field(default_factory=lambda: str(config.models_dir()))
    cache_dir: str = field(default_factory=lambda: str(config.CACHE_DIR))
    bootstrap: int = config.BOOTSTRAP_RESAMPLES
    progress: bool = True
    overwrite: bool = True
    data_format: str = "auto"  # "auto" | "kaggle" | "nih" (train.py --format)
    strategy: str = "none"  # "none" | "mirrored" | "multiworker" (core.training.distribute); batch_size is per replica
    pipeline: str = (
        "auto"  # "memory" (decoded cache) | "streaming" (core.data.streaming) | "auto" (streaming if large or multiworker)
    )

    def resolved_name(self) -> str:
        """The model folder name: --name, else '<model>-<size>' with dashes."""
        from core.models import zoo

        spec = zoo.get_spec(self.model)
        return self.name or f"{spec.name.replace('_', '-')}-{self.size()}"

    def size(self) -> int:
        """Input side in pixels (the architecture's default when not given)."""
        from core.models import zoo

        return int(self.img_size or zoo.get_spec(self.model).default_size)

    def threshold_rule_text(self) -> str:
        """Human text of the operating-point rule, e.g. 'highest validation sensitivity with ... >= 0.95'."""
        text = self._base_rule_text()
        if self.threshold_views > 0:
            text += (
                f", on the validation films as given plus {self.threshold_views} acquisition-perturbed views of each "
                "(zoom, shift, exposure, gamma, blur, noise)"
            )
        return text

    def _base_rule_text(self) -> str:
        if self.threshold_rule == "specificity":
            return cards.THRESHOLD_RULE_TEXT.format(target=self.threshold_target)
        if self.threshold_rule == "sensitivity":
            return f"highest threshold with validation sensitivity >= {self.threshold_target:.2f}"
        return {"f1": "maximal F1 on validation", "youden": "maximal Youden J on validation"}[self.threshold_rule]


@dataclass
class RunResult:
    """What :func:`train` produced: the final folder and the card written into it."""

    folder: Path
    card: dict
    model: Any = None  # the trained Keras model (on a non-chief worker, `folder` is where the chief writes)


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


def _fit_stage(
    cfg: TrainConfig,
    work_dir: Path,
    model: Any,
    train_data: Any,
    val_data: Any,
    *,
    stage: str,
    epochs: int,
    learning_rate: float,
    class_weight: dict[int, float] | None,
    steps_per_epoch: int | None = None,
) -> pd.DataFrame:
    """:func:`core.training.fitting.fit_stage` with the run's shared options (patience, progress, label smoothing, work folder)."""
    return fitting.fit_stage(
        model,
        train_data,
        val_data,
        stage=stage,
        epochs=epochs,
        learning_rate=learning_rate,
        work_dir=work_dir,
        patience=cfg.patience,
        class_weight=class_weight,
        progress=cfg.progress,
        steps_per_epoch=steps_per_epoch,
        label_smoothing=cfg.label_smoothing,
    )


def _train_transfer(
    model: Any, cfg: TrainConfig, index: pd.DataFrame, weights_source: str, work_dir: Path
) -> list[pd.DataFrame]:
    """Head on cached final feature maps, then (optionally) top blocks + head on cached mid-level maps."""
    import keras

    from core.models import zoo

    spec = zoo.get_spec(cfg.model)
    head_layer = zoo.head_input_layer(model)
    layer_names = [head_layer.name]
    if cfg.finetune_epochs > 0 and not cfg.end_to_end:
        layer_names.insert(0, zoo.finetune_input_layer(model, cfg.model).name)
    view_augment = cfg.augment if isinstance(cfg.augment, str) and cfg.augment != "none" else "acquisition"

    def features_of(frame: pd.DataFrame, view: int = 0) -> dict[str, np.ndarray]:
        """Cached feature maps of ``frame``'s films: as acquired (view 0) or one augmented view."""
        return features.cached_layer_inputs(
            model, spec.name, frame, layer_names=layer_names, img_size=cfg.size(), channels=spec.channels,
            weights_source=weights_source, cache_dir=Path(cfg.cache_dir), progress=cfg.progress,
            augment=view_augment if view else None, view_seed=cfg.seed * 100 + view,
        )

    # Features of every image of the index are cached once and shared by every run on the same data.
    cache_frame = index
    cached = features_of(cache_frame)
    position = pd.Series(np.arange(len(cache_frame)), index=cache_frame["relpath"].astype(str).to_numpy())
    train_frame = index[index["split"] == "train"]
    train_rows = position.loc[train_frame["relpath"].astype(str)].to_numpy()
    val_rows = position.loc[index.loc[index["split"] == "val", "relpath"].astype(str)].to_numpy()
    y_train_films = train_frame["label"].to_numpy()
    y_train = np.tile(y_train_films, 1 + max(0, cfg.augment_views))
    y_val = index.loc[index["split"] == "val", "label"].to_numpy()
    # Augmented views of the training films only (validation stays as acquired: the rule is chosen on it).
    view_features = [features_of(train_frame, view) for view in range(1, 1 + max(0, cfg.augment_views))]
    histories = []

    def stage_data(name: str) -> tuple[Any, Any]:
        values = cached[name]
        train_values = (
            np.concatenate([np.asarray(values[train_rows])] + [np.asarray(v[name]) for v in view_features], axis=0)
            if view_features
            else np.ascontiguousarray(values[train_rows])
        )
        train = fitting.feature_dataset(
            train_values,
            y_train,
            batch_size=cfg.batch_size,
            shuffle=True,
            seed=cfg.seed,
            rows=fitting.balanced_rows(y_train, cfg.balance, cfg.seed),
        )
        val = fitting.feature_dataset(
            np.ascontiguousarray(values[val_rows]), y_val, batch_size=128, shuffle=False, seed=cfg.seed
        )
        return train, val

    for layer in model.layers:
        layer.trainable = layer.name.startswith(zoo.HEAD_LAYER_PREFIX) or layer.name == zoo.OUTPUT_LAYER
    head = keras.Model(head_layer.input, model.output, name=f"{spec.name}_head")
    train_data, val_data = stage_data(head_layer.name)
    history = _fit_stage(
        cfg,
        work_dir,
        head,
        train_data,
        val_data,
        stage="head",
        epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        class_weight=fitting.class_weight_for(y_train_films, cfg.balance),
    )
    histories.append(history.assign(stage="head"))
    if cfg.finetune_epochs > 0 and cfg.end_to_end:
        del train_data, val_data
        for layer in model.layers:
            layer.trainable = not layer.name.startswith(zoo.PREPROCESS_PREFIX)
        log.info("Fine-tuning every layer end to end on augmented films at learning rate %g", cfg.finetune_learning_rate)
        histories.extend(
            _train_end_to_end(
                model, replace(cfg, epochs=cfg.finetune_epochs, learning_rate=cfg.finetune_learning_rate), index, work_dir,
                stage="finetune",
            )
        )
    elif cfg.finetune_epochs > 0:
        first = zoo.finetune_input_layer(model, cfg.model)
        unfrozen = fitting.set_finetune_trainable(model, first.name)
        log.info(
            "Fine-tuning %d layers from %s at learning rate %g", len(unfrozen), first.name, cfg.finetune_learning_rate
        )
        top = keras.Model(first.input, model.output, name=f"{spec.name}_top")
        del train_data, val_data
        train_data, val_data = stage_data(first.name)
        history = _fit_stage(
            cfg,
            work_dir,
            top,
            train_data,
            val_data,
            stage="finetune",
            epochs=cfg.finetune_epochs,
            learning_rate=cfg.finetune_learning_rate,
            class_weight=fitting.class_weight_for(y_train_films, cfg.balance),
        )
        histories.append(history.assign(stage="finetune"))
    for layer in model.layers:
        layer.trainable = True
    return histories


def _train_end_to_end(
    model: Any, cfg: TrainConfig, index: pd.DataFrame, work_dir: Path, *, stage: str = "train"
) -> list[pd.DataFrame]:
    """MLP / CNN (and a transfer model's end-to-end stage): images through the tf.data pipeline (augmentation and
    balancing as configured)."""
    from core.data import pipeline, streaming
    from core.models import zoo

    spec = zoo.get_spec(cfg.model)
    train_frame = pipeline.select_split(index, "train")
    val_frame = pipeline.select_split(index, "val")
    steps = None
    class_weight = None  # the streaming pipeline applies class weights as sample weights itself
    if streaming.use_streaming(cfg.pipeline, n_images=len(train_frame), strategy=cfg.strategy):
        if cfg.mixup:
            raise ValueError("--mixup works with the in-memory pipeline only (--pipeline memory), not streaming.")
        train_data, val_data, steps = streaming.training_datasets(
            train_frame, val_frame, img_size=cfg.size(), channels=spec.channels, global_batch=cfg.batch_size,
            balance=cfg.balance, augment=cfg.augment, seed=cfg.seed,
        )
    else:
        class_weight = fitting.class_weight_for(train_frame["label"].to_numpy(), cfg.balance)
        train_data = pipeline.make_dataset(
            train_frame, img_size=cfg.size(), channels=spec.channels, batch_size=cfg.batch_size, shuffle=True,
            augment=cfg.augment, balance=cfg.balance, seed=cfg.seed, mixup=cfg.mixup, class_weight=class_weight,
        )
        val_data = pipeline.make_dataset(val_frame, img_size=cfg.size(), channels=spec.channels, batch_size=64)
        if cfg.mixup:
            class_weight = None  # mixed into per-sample weights by the pipeline
    history = _fit_stage(
        cfg, work_dir, model, train_data, val_data, stage=stage, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        class_weight=class_weight, steps_per_epoch=steps,
    )
    return [history.assign(stage=stage)]


def train(cfg: TrainConfig) -> RunResult:
    """Run one training end to end and publish ``models/<name>/`` atomically; returns the folder and card.

    Under ``cfg.strategy`` the model is built, trained and saved inside the strategy's scope, at a global
    batch of ``cfg.batch_size`` per replica; only the chief writes to ``cfg.models_dir`` (core.training.distribute).
    """
    from dataclasses import replace

    from core.training import distribute

    strategy = distribute.make_strategy(distribute.check_strategy(cfg.strategy))  # first: before TensorFlow runs
    info = distribute.cluster_info() if cfg.strategy == "multiworker" else distribute.ClusterInfo(None, 0, 1)
    run_cfg = replace(cfg, batch_size=distribute.global_batch_size(cfg.batch_size, strategy.num_replicas_in_sync))
    distribution = {
        "strategy": cfg.strategy,
        "replicas": int(strategy.num_replicas_in_sync),
        "workers": info.num_workers,
        "per_replica_batch_size": cfg.batch_size,
        "global_batch_size": run_cfg.batch_size,
    }
    with strategy.scope(), distribute.artifact_dir(cfg.models_dir, info) as models_dir:
        result = _train(run_cfg, Path(models_dir), card_cfg=cfg, distribution=distribution)
    if not info.is_chief:
        result.folder = Path(cfg.models_dir) / cfg.resolved_name()
    return result


def _train(cfg: TrainConfig, models_dir: Path, *, card_cfg: TrainConfig, distribution: dict) -> RunResult:
    """The body of :func:`train` in the strategy's scope: ``cfg`` has the global batch, ``card_cfg`` the user's."""
    import shutil
    import time

    import keras

    from core.data import pipeline
    from core.models import weights, zoo

    pipeline.check_balance(cfg.balance)
    spec = zoo.get_spec(cfg.model)
    if cfg.mixup and spec.family == "transfer":
        raise ValueError(f"--mixup mixes training images; {spec.name} trains on cached backbone features. "
                         "Use it with mlp / cnn_reference / cnn_deep.")
    if cfg.mixup < 0:
        raise ValueError(f"--mixup must be 0 (off) or a Beta parameter > 0, e.g. 0.2; got {cfg.mixup}.")
    name = cfg.resolved_name()
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise ValueError(f"Model name {name!r} must be a plain folder name (no '/', not starting with '.').")
    models_dir.mkdir(parents=True, exist_ok=True)
    work_dir = models_dir / f".backup-{name}"  # resumable state (BackupAndRestore, best checkpoints)
    start = time.time()
    keras.utils.set_random_seed(cfg.seed)
    index = load_training_index(cfg.data, limit=cfg.limit, seed=cfg.seed, data_format=cfg.data_format)
    log.info(
        "Training %s (%s) on %s",
        name,
        spec.name,
        {s: int((index["split"] == s).sum()) for s in ("train", "val", "test")},
    )
    weights_source = (
        weights.resolve_weights(spec.name, cfg.weights).source
        if spec.family == "transfer"
        else "none (trained from scratch)"
    )
    model = zoo.build_model(
        spec.name, img_size=cfg.size(), weights=cfg.weights, dropout=cfg.dropout, seed=cfg.seed, normalize=cfg.normalize,
        framing=cfg.framing,
    )
    if spec.family == "transfer":
        histories = _train_transfer(model, cfg, index, weights_source, work_dir)
    else:
        histories = _train_end_to_end(model, cfg, index, work_dir)
    history = pd.concat(histories, ignore_index=True)
    evaluated = index[index["split"].isin(["val", "test"])].reset_index(drop=True)
    scores = evaluation.score_frame(
        model, evaluated, img_size=cfg.size(), channels=spec.channels, progress=cfg.progress
    )
    predictions = evaluation.predictions_frame(evaluated, scores)
    views = None
    if cfg.threshold_views > 0:
        views = evaluation.perturbed_view_scores(
            model,
            evaluated[evaluated["split"] == "val"],
            n_views=cfg.threshold_views,
            img_size=cfg.size(),
            channels=spec.channels,
            seed=cfg.seed,
        )
    threshold, results = evaluation.evaluate_predictions(
        predictions,
        rule=cfg.threshold_rule,
        target=cfg.threshold_target,
        n_resamples=cfg.bootstrap,
        seed=cfg.seed,
        threshold_rows=views,
    )
    card = cards.build_card(
        cfg=card_cfg,
        model=model,
        weights_source=weights_source,
        dataset=cards.dataset_summary(index, cfg.data),
        threshold=threshold,
        results=results,
        seconds=time.time() - start,
        epochs_run=len(history),
        extra={"distribution": distribution},
    )
    final = models_dir / name
    with cards.staged_folder(final, overwrite=cfg.overwrite) as tmp:
        cards.write_artifacts(tmp, model=model, card=card, history=history, predictions=predictions)
        if views is not None:
            views.to_csv(tmp / evaluation.THRESHOLD_VIEWS_FILE, index=False)
    shutil.rmtree(work_dir, ignore_errors=True)
    log.info("Wrote %s: test AUC %.3f, threshold %.3f", final, results["test"]["roc_auc"]["value"], threshold)
    return RunResult(final, card, model)
