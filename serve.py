"""Serve the dashboard (`make demo`): `streamlit run streamlit_app.py` with the libraries the pages need imported first.

Streamlit runs every page inside the server process, so whatever is imported here is already in memory when the first
visitor arrives: the landing page's first render does not pay for importing pandas, plotly, scikit-learn and SciPy
(several seconds on a small CPU), and the health check answers only once that is done. TensorFlow is not imported here
(only the Prediction and Activation maps pages load it, when they run a model).

Then it computes what the landing page reads (core.report.warm_landing_page: the dataset index, the model ranking and
the recommended model's bootstrap CIs), so the first visitor does not wait for it either. `PNEUMONIA_NO_WARMUP=1`
skips that step (bench/bench_first_contact.py measures the page with and without it).

    python serve.py [streamlit run options, e.g. --server.port 8501]
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

PRELOAD = (
    "numpy", "pandas", "plotly.graph_objects", "sklearn.metrics", "sklearn.calibration", "scipy.stats",
    "core.config", "core.models.registry", "core.evaluation.metrics", "core.report", "core.data", "core.data.summary", "core.report.examples",
    "streamlit.emojis",  # imported by the first st.info/st.warning with an icon: ~1.6 s for the first such upload
)
"""Modules every page (and the landing page first) would otherwise import on the first visit."""


def main(argv: Sequence[str] | None = None) -> None:
    """Import PRELOAD, then hand over to Streamlit's own command line (`streamlit run streamlit_app.py ...`)."""
    here = Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    for name in PRELOAD:
        importlib.import_module(name)
    if os.environ.get("PNEUMONIA_NO_WARMUP") != "1":
        # Streamlit checks once per process, on the first element it draws, whether it runs in a REPL, to print a
        # warning there: inspect.stack() with the source lines of every frame, 0.8 s of the first visit measured
        # with py-spy (bench/bench_first_contact.py). This server is never a REPL, so that check is marked done.
        from streamlit import delta_generator

        if hasattr(delta_generator, "_use_warning_has_been_displayed"):
            delta_generator._use_warning_has_been_displayed = True
        from core import config, report

        try:
            report.warm_landing_page(config.models_dir(), config.data_root())
        except Exception as exc:  # noqa: BLE001  the landing page reports a broken model or dataset in its own words
            print(f"Landing page warm-up skipped: {exc}", file=sys.stderr)
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(here / "streamlit_app.py"), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
