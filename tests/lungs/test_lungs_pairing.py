"""The V7 mask pairing: block assignment, in-order alignment, and the per-pair check on real pairs (a shifted
pairing fails it), scored by the shipped lung model on official test films it never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.lungs import pairing

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MASKS_DIR = PROJECT_ROOT / "data" / "lung_masks"
N_CHECK = 40


def test_assign_blocks_walks_back_from_the_last_id_and_flags_gaps() -> None:
    counts = {"train/PNEUMONIA": 500, "train/NORMAL": 6, "val/NORMAL": 2, "test/NORMAL": 3, "val/PNEUMONIA": 2, "test/PNEUMONIA": 4}
    first = pairing.FIRST_KERMANY_ID
    train_pneumonia = list(range(first, first + 300)) + list(range(first + 310, first + 508))  # a gap: 498 in order
    tail = list(range(first + 508, first + 508 + 17))  # 6 + 2 + 3 + 2 + 4 contiguous
    late = [first + 600, first + 601]
    blocks = {b.folder: b for b in pairing.assign_blocks(train_pneumonia + tail + late, counts)}
    assert blocks["test/PNEUMONIA"].ids == tuple(tail[-4:]) and blocks["test/PNEUMONIA"].exact
    assert blocks["train/NORMAL"].ids == tuple(tail[:6]) and blocks["train/NORMAL"].exact
    first_block = blocks["train/PNEUMONIA"]
    assert len(first_block.ids) == 498 and first_block.late == tuple(late) and not first_block.exact


def test_align_in_order_finds_the_skipped_films() -> None:
    truth = [0, 1, 2, 4, 5, 6, 7, 9, 10]  # films 3 and 8 have no mask
    rng = np.random.default_rng(0)
    table = rng.uniform(0.6, 0.8, size=(len(truth), 11))
    for mask, film in enumerate(truth):
        table[mask, film] = 0.95
    assert pairing.align_in_order(lambda m, f: table[m, f], len(truth), 11) == truth
    with pytest.raises(ValueError, match="More masks"):
        pairing.align_in_order(lambda m, f: 0.0, 5, 4)


def test_body_fraction_flags_a_mask_on_the_air_around_the_body() -> None:
    film = np.zeros((100, 100), np.uint8)
    film[:, 30:70] = 180  # a body strip, dark air either side
    inside = np.zeros((100, 100), bool)
    inside[20:80, 35:65] = True
    outside = np.zeros((100, 100), bool)
    outside[20:80, 2:28] = True
    assert pairing.body_fraction(film, inside) == pytest.approx(1.0)
    assert pairing.body_fraction(film, outside) < 0.2


@pytest.fixture(scope="module")
def checked_test_pairs(data_root: Path):
    """N_CHECK official test films (held out from the shipped lung model), their human masks and the model's masks."""
    from core.lungs.segment import clean_mask, load_lung_model
    from core.lungs.unet import predict_probabilities, prepare_film

    table = pd.read_csv(MASKS_DIR / "pairing.csv")
    rows = table[(table["split"] == "test") & table["passed"]]
    rows = rows[rows["label"] == "PNEUMONIA"].head(N_CHECK)  # consecutive films of one folder, in upload order
    model = load_lung_model()
    size = int(model.input_shape[1])
    films = np.stack([np.asarray(Image.open(data_root / "test" / r.label / r.film).convert("L")) for r in rows.itertuples()])
    masks224 = np.stack([np.asarray(Image.open(MASKS_DIR / "test" / r.label / (Path(r.film).stem + ".png"))) > 0
                         for r in rows.itertuples()])
    masks = np.stack([pairing.geometry.resize_mask(m, (size, size)) for m in masks224])
    pred = np.stack([clean_mask(p) for p in predict_probabilities(model, np.stack([prepare_film(f, size) for f in films]))])
    return films, masks224, masks, pred, np.array(["test/PNEUMONIA"] * len(rows))


def test_true_pairs_pass_the_check_and_a_shifted_pairing_fails(checked_test_pairs) -> None:
    films, masks224, masks, pred, folders = checked_test_pairs
    true = pairing.pair_verdicts(pred, masks, films, masks224, folders)
    assert true["passed"].mean() >= 0.85
    shifted = pairing.pair_verdicts(pred[:-1], masks[1:], films[:-1], masks224[1:], folders[:-1])
    assert shifted["passed"].mean() <= 0.15
    assert (true["window_margin"] > 0).mean() >= 0.85 and (shifted["window_margin"] <= 0).mean() >= 0.85


def test_pairing_table_matches_the_shipped_masks() -> None:
    table = pd.read_csv(MASKS_DIR / "pairing.csv")
    passed = table[table["passed"]]
    shipped = {p.relative_to(MASKS_DIR).as_posix() for p in MASKS_DIR.glob("*/*/*.png")}
    expected = {f"{r.split}/{r.label}/{Path(r.film).stem}.png" for r in passed.itertuples()}
    assert shipped == expected
    assert table["mask_id"].is_unique and not table.duplicated(["split", "label", "film"]).any()
