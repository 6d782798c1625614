"""Warm latency of upload -> probability + Grad-CAM overlay per shipped model, and fast Grad-CAM vs tf-keras-vis.

    python -m bench predict        (or: python -m bench.bench_predict)

For every available model in models/: the median (over REPEATS warm runs, after WARMUP runs) of decoding the
bytes of a real test X-ray, scoring it, computing the explanation (Grad-CAM; SmoothGrad for a model without
convolutions) and the overlay at the original resolution. Then, on each convolutional model, our traced
Grad-CAM against tf_keras_vis.gradcam.Gradcam (ReplaceToLinear, same layer, same image): time ratio and
the Pearson correlation of the two maps at the layer's resolution (the algorithm) and after each library's
own upsampling to the input (tf-keras-vis: scipy zoom, corner-aligned; ours: OpenCV bilinear, centre-aligned).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from bench.results_io import write_results
from core import config
from core.models import registry

WARMUP = 3
REPEATS = 15
GOALS_S = {"small": 0.15, "xception": 1.0}
IMAGE = "test/PNEUMONIA/person100_bacteria_475.jpeg"


def _median_seconds(function: Callable[[], object], repeats: int = REPEATS) -> float:
    """Median wall time of `function` after WARMUP untimed calls."""
    for _ in range(WARMUP):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> dict:
    """Measure, print and save the results."""
    config.quiet_tensorflow()
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import BinaryScore

    from core import explain, predict
    from core.imaging import decode_xray

    data = (config.data_root() / IMAGE).read_bytes()
    results: dict = {"image": IMAGE, "warmup": WARMUP, "repeats": REPEATS, "models": {}}
    scorers = [(entry.name, predict.load_scorer(entry.path)) for entry in registry.list_models() if entry.available]
    if not any("xception" in name for name, _ in scorers):
        # No shipped Xception yet: time the same architecture built with its offline ImageNet weights (untrained
        # head). Latency does not depend on the head's weights; the label says what it is.
        from core.models import zoo

        model = zoo.build_model("xception", img_size=224, weights="imagenet")
        scorers.append(("xception-224 (zoo build, untrained head: latency only)", predict.scorer_from_model(model, name="xception-224")))
    if not scorers:
        print("No available model in models/: train them with `make models` first.")
    for name, scorer in scorers:
        method = explain.available_methods(scorer.model)[0]
        has_conv = method == "gradcam" and not explain.members(scorer.model)  # flat CNN: compare with tf-keras-vis

        def upload_to_overlay() -> np.ndarray:
            decoded = decode_xray(data, name="upload.jpeg")
            model_input = scorer.prepare(decoded)
            scorer.predict_batch(model_input[None])
            heatmap = explain.explain(scorer.model, model_input, method=method)
            return explain.overlay(decoded.pixels, heatmap, opacity=0.45)

        row: dict = {"input": list(scorer.input_shape), "explanation": method,
                     "upload_to_overlay_s": _median_seconds(upload_to_overlay)}
        goal = GOALS_S["xception" if "xception" in name.lower() else "small"]
        row["goal_s"], row["meets_goal"] = goal, row["upload_to_overlay_s"] <= goal
        if has_conv:
            model_input = scorer.prepare(decode_xray(data))[None]
            layer = explain.default_target_layer(scorer.model)
            ours = explain.gradcam_for(scorer.model, layer)
            reference = Gradcam(scorer.model, model_modifier=ReplaceToLinear(), clone=True)
            score = BinaryScore(True)
            options = {"penultimate_layer": layer, "seek_penultimate_conv_layer": False}  # exactly our layer

            ours_s = _median_seconds(lambda: ours.heatmaps(model_input))
            reference_s = _median_seconds(lambda: reference(score, model_input, **options), repeats=5)
            at_layer = float(np.corrcoef(ours(model_input)[0][0].ravel(),
                                         np.asarray(reference(score, model_input, expand_cam=False, **options))[0].ravel())[0, 1])
            at_input = float(np.corrcoef(ours.heatmaps(model_input)[0].ravel(),
                                         np.asarray(reference(score, model_input, **options))[0].ravel())[0, 1])
            row.update(gradcam_layer=layer, fast_gradcam_s=ours_s, tf_keras_vis_gradcam_s=reference_s,
                       speedup_vs_tf_keras_vis=reference_s / ours_s, map_correlation=at_layer, map_correlation_upsampled=at_input)
        results["models"][name] = row
        extra = (f"; Grad-CAM {row['fast_gradcam_s'] * 1000:.1f} ms vs tf-keras-vis {row['tf_keras_vis_gradcam_s'] * 1000:.1f} ms "
                 f"(x{row['speedup_vs_tf_keras_vis']:.1f} faster), map correlation {row['map_correlation']:.3f} at the layer, "
                 f"{row['map_correlation_upsampled']:.3f} after each library's own upsampling") if has_conv else ""
        print(f"{name}: upload -> probability + {method} overlay {row['upload_to_overlay_s'] * 1000:.0f} ms "
              f"(goal {goal * 1000:.0f} ms, {'met' if row['meets_goal'] else 'NOT met'}){extra}", flush=True)
    write_results("predict", results)
    return results


if __name__ == "__main__":
    main()
