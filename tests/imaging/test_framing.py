"""core.imaging.framing / core.models.layers: the content box on known pixels, the Keras layer equal to the numpy rule,
padding removed from real films, Grad-CAM maps placed back into the box, safe_mode round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.imaging import framing, perturbations


def _padded_ramp(height: int = 64, width: int = 64, left: int = 8, right: int = 56) -> np.ndarray:
    """Black bars left and right, a horizontal ramp 20..200 in columns left..right-1."""
    image = np.zeros((height, width), np.float32)
    image[:, left:right] = np.linspace(20, 200, right - left)[None, :]
    return image


def test_content_box_finds_black_bars_and_leaves_a_clean_film_whole() -> None:
    box = framing.content_box(_padded_ramp())
    assert (box.top, box.bottom, box.left, box.right) == (0, 63, 8, 55)
    assert framing.content_box(np.full((32, 40), 90.0)).is_whole(32, 40)


def test_content_box_uses_the_mean_so_a_marker_in_a_bar_does_not_keep_the_bar() -> None:
    image = _padded_ramp()
    image[30:35, 1:4] = 255.0  # a small bright text marker (5 of 64 rows) inside the left bar
    assert framing.content_box(image).left == 8


def test_content_box_never_crops_more_than_max_crop_and_keeps_a_black_image_whole() -> None:
    image = np.zeros((40, 40), np.float32)
    image[:, 30:] = 100.0  # content only in the right quarter
    box = framing.content_box(image, max_crop=0.25)
    assert box.left == 10 and box.right == 39
    assert framing.content_box(np.zeros((20, 20))).is_whole(20, 20)
    with pytest.raises(ValueError, match="Expected an image"):
        framing.content_box(np.zeros(5))


def test_crop_to_content_of_a_ramp_is_the_ramp_stretched_over_the_whole_width() -> None:
    cropped = framing.crop_to_content(_padded_ramp())
    expected = np.linspace(20, 200, 48)  # columns 8..55 resampled corner-aligned to 64 columns: still linear
    np.testing.assert_allclose(cropped[0], np.interp(np.linspace(0, 47, 64), np.arange(48), expected), atol=1e-3)
    assert cropped.shape == (64, 64)


def test_the_keras_layer_applies_the_same_rule_as_numpy(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    from core.models.layers import CropToContent

    rng = np.random.default_rng(0)
    films = np.stack([_padded_ramp(), _padded_ramp(left=0, right=64), _padded_ramp(left=12, right=40)])
    films = films + rng.uniform(0, 5, films.shape).astype(np.float32) * (films > 0)
    layer_output = np.asarray(CropToContent()(films[..., None]))[..., 0]
    for film, output in zip(films, layer_output):
        np.testing.assert_allclose(output, framing.crop_to_content(film), atol=1e-2)
    inputs = keras.Input((64, 64, 1))
    model = keras.Model(inputs, CropToContent(name="crop")(inputs))
    model.save(tmp_path / "crop.keras")
    loaded = keras.saving.load_model(tmp_path / "crop.keras", safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(loaded(films[..., None])), layer_output[..., None], atol=1e-4)


def test_padding_a_real_film_is_undone(data_root: Path) -> None:
    film = np.asarray(Image.open(sorted((data_root / "train" / "NORMAL").iterdir())[0]).convert("L"), np.float32)
    reference = framing.crop_to_content(film)
    for changed in (perturbations.pad_sides(film.astype(np.uint8), 0.10), perturbations.zoom(film.astype(np.uint8), 0.85)):
        undone = framing.crop_to_content(np.asarray(changed, np.float32))
        plain = np.asarray(changed, np.float32)
        # Resampling twice blurs a little; without the crop the padded film differs from the film far more.
        assert np.abs(undone - reference).mean() < 0.25 * np.abs(plain - reference).mean()
        assert np.abs(undone - reference).mean() < 8.0


def test_uncrop_maps_places_the_map_in_the_box_and_zero_outside() -> None:
    images = _padded_ramp()[None]
    maps = np.ones((1, 64, 64), np.float32)
    placed = framing.uncrop_maps(maps, images)
    assert placed[0, :, :8].max() == 0 and placed[0, :, 56:].max() == 0
    assert placed[0, :, 8:56].min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same N, H and W"):
        framing.uncrop_maps(maps, np.zeros((1, 32, 32)))


def test_zoo_puts_the_crop_first_and_the_model_stays_flat() -> None:
    pytest.importorskip("keras")
    from core.models import zoo

    model = zoo.build_model("cnn_deep", img_size=32, framing="crop-borders")
    assert [layer.name for layer in model.layers][:2] == ["pixels", "preprocess_crop_to_content"]
    with pytest.raises(ValueError, match="Unknown framing"):
        zoo.build_model("cnn_deep", img_size=32, framing="zoom")


def test_gradcam_of_a_cropping_model_is_zero_on_the_black_bars() -> None:
    pytest.importorskip("keras")
    from core import explain
    from core.models import zoo

    model = zoo.build_model("cnn_deep", img_size=64, framing="crop-borders", seed=1)
    film = _padded_ramp()[None, ..., None] + np.random.default_rng(0).uniform(0, 30, (1, 64, 64, 1)).astype(np.float32) * (_padded_ramp()[None, ..., None] > 0)
    assert explain.crops_to_content(model)
    for heatmap in (explain.gradcam_for(model).heatmaps(film)[0], explain.explain(model, film[0], method="gradcam++")):
        assert heatmap.shape == (64, 64)
        assert heatmap[:, :8].max() == 0 and heatmap[:, 56:].max() == 0


def test_activation_maps_show_the_film_in_the_frame_the_model_uses() -> None:
    pytest.importorskip("keras")
    from core import explain
    from core.models import zoo

    film = _padded_ramp() / 255.0
    framed = zoo.build_model("cnn_deep", img_size=32, framing="crop-borders")
    plain = zoo.build_model("cnn_deep", img_size=32)
    np.testing.assert_allclose(explain.as_the_model_frames_it(framed, film), framing.crop_to_content(_padded_ramp()) / 255.0, atol=1e-6)
    assert explain.as_the_model_frames_it(plain, film) is film
