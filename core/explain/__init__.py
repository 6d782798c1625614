"""Explanations of a model's decision: Grad-CAM (fast, default) and tf-keras-vis methods, overlays, a deletion
curve to judge a heatmap's faithfulness, feature maps of any layer and filter visualisations.

Models follow the artifact contract (docs/ARCHITECTURE.md): a flat functional Keras model taking raw pixels in
[0, 255] of shape (N, H, W, C) and returning P(pneumonia) of shape (N, 1). Heatmaps are float32 in [0, 1].
Everything built from a model (sub-models, traced functions, tf-keras-vis objects) is built once per
(model, layer) and cached here, so callers may ask again cheaply from several threads."""
# The work lives in the private modules below; these are the names to import from here.
from core.explain._layers import (  # noqa: F401
    METHODS,
    Target,
    SCORECAM_MAX_CHANNELS,
    SMOOTHGRAD_SAMPLES,
    SMOOTHGRAD_NOISE,
    DELETION_STEPS,
    FILTER_VIS_MAX_STEPS,
    FILTER_VIS_NOISE,
    PREPROCESS_PREFIX,
    cached,
    LayerInfo,
    members,
    member_adapter,
    feature_layers,
    default_layer_index,
    conv_layers,
    default_target_layer,
    logit_head,
    crops_to_content,
    as_the_model_frames_it,
    to_input_frame,
    resize_maps,
)
from core.explain._cams import (  # noqa: F401
    GradCam,
    EnsembleGradCam,
    gradcam_for,
    available_methods,
    explain,
)
from core.explain._overlays import (  # noqa: F401
    overlay,
    colourise,
    to_png,
)
from core.explain._deletion import (  # noqa: F401
    LOGIT_CLIP,
    STRONG_GAP,
    logit_function,
    DeletionCurve,
    deletion_curve,
)
from core.explain._activations import (  # noqa: F401
    layer_activations,
    channel_order,
    filter_visualisations,
)
