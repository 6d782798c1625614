// Live threshold explorer (st.components.v2): a slider that recomputes every number and moves every figure point
// in the browser on each pointer move, from the sweep the server sent (distinct scores ascending with the
// negatives/positives strictly below each, core.metrics.ThresholdSweep.compact). On release (pointer up, key up)
// the value goes back to Python as the `release` trigger; the server's own numbers come back in `data.server`
// and are compared with what this widget shows.
//
// The arithmetic mirrors core/metrics.py operation for operation (float64 both sides), and numbers are formatted
// like Python's format() (round half to even on the exact binary value), so both sides show identical text.

const SVG = "http://www.w3.org/2000/svg";
const INSTANCES = new WeakMap();
const METRICS = [
  ["recall", "Recall (sensitivity)", "Share of pneumonia cases caught"],
  ["specificity", "Specificity", "Share of normal X-rays cleared"],
  ["precision", "Precision (PPV)", "Share of alarms that are pneumonia"],
  ["npv", "NPV", "Share of cleared X-rays that are normal"],
  ["f1", "F1", "Harmonic mean of precision and recall"],
  ["accuracy", "Accuracy", "Share of all X-rays decided correctly"],
];
const DIGITS = 3;

// ---------------------------------------------------------------------------------------------- numbers
function ratio(a, b) { return b ? a / b : 0.0; }

// Number of distinct scores strictly below t (lower bound), like numpy.searchsorted(side="left").
function lowerBound(scores, t) {
  let lo = 0, hi = scores.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (scores[mid] < t) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// Everything shown at threshold t: core.metrics.ThresholdSweep.at and per_population, same operations.
export function numbersAt(sweep, t, prevalence) {
  const i = lowerBound(sweep.scores, t);
  const fn = sweep.pos_below[i], tn = sweep.neg_below[i];
  const tp = sweep.n_pos - fn, fp = sweep.n_neg - tn;
  const recall = ratio(tp, tp + fn);
  const specificity = ratio(tn, tn + fp);
  const n = tp + fp + tn + fn;
  const out = {
    threshold: t, tp, fp, tn, fn, recall, specificity,
    precision: ratio(tp, tp + fp), npv: ratio(tn, tn + fn),
    accuracy: ratio(tp + tn, n), f1: ratio(2 * tp, 2 * tp + fp + fn),
  };
  const p = prevalence;
  if (p > 0 && p < 1) {
    out.ppv_at_prevalence = ratio(recall * p, recall * p + (1.0 - specificity) * (1.0 - p));
    out.npv_at_prevalence = ratio(specificity * (1.0 - p), specificity * (1.0 - p) + (1.0 - recall) * p);
    const cases = 1000 * p;
    const healthy = 1000 - cases;
    out.caught = cases * recall;
    out.missed = cases - out.caught;
    out.false_alarms = healthy * (1.0 - specificity);
    out.flagged = out.caught + out.false_alarms;
  }
  return out;
}

// Python's f"{x:.{d}f}" for x >= 0: correctly rounded, exact ties to even (toFixed breaks ties upwards).
export function pyFixed(x, d) {
  const exact = x.toFixed(100);  // exact decimal expansion for every double >= 2**-48 (smaller ones show as 0)
  const dot = exact.indexOf(".");
  const rest = exact.slice(dot + 1 + d);
  if (rest[0] === "5" && /^50*$/.test(rest)) {  // an exact tie: keep the even neighbour
    const kept = exact.slice(0, dot + 1 + d).replace(/\.$/, "");
    const last = Number(kept[kept.length - 1]);
    if (last % 2 === 0) return kept;
  }
  return x.toFixed(d);
}

export function formatted(values) {
  const out = { threshold: pyFixed(values.threshold, 4) };
  for (const [key] of METRICS) out[key] = pyFixed(values[key], DIGITS);
  for (const key of ["tn", "fp", "fn", "tp"]) out[key] = String(values[key]);
  if (values.ppv_at_prevalence !== undefined) {
    out.ppv_at_prevalence = pyFixed(values.ppv_at_prevalence, DIGITS);
    out.npv_at_prevalence = pyFixed(values.npv_at_prevalence, DIGITS);
    for (const key of ["caught", "missed", "false_alarms", "flagged"]) out[key] = pyFixed(values[key], 0);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- drawing
function el(tag, attrs = {}, parent = null, text = null) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

const W = 360, H = 290, M = { l: 48, r: 12, t: 30, b: 42 };

function panel(parent, title, xTitle, yTitle, xRange, yRange) {
  const svg = el("svg:svg", { viewBox: `0 0 ${W} ${H}`, class: "tx-panel", role: "img", "aria-label": title }, parent);
  const pw = W - M.l - M.r, ph = H - M.t - M.b;
  const sx = (x) => M.l + ((x - xRange[0]) / (xRange[1] - xRange[0])) * pw;
  const sy = (y) => M.t + ph - ((y - yRange[0]) / (yRange[1] - yRange[0])) * ph;
  el("svg:text", { x: W / 2, y: 16, class: "tx-title", "text-anchor": "middle" }, svg, title);
  el("svg:rect", { x: M.l, y: M.t, width: pw, height: ph, class: "tx-plot" }, svg);
  const ticks = (lo, hi) => { const out = []; const step = niceStep(hi - lo); for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(+v.toFixed(6)); return out; };
  for (const v of ticks(xRange[0], xRange[1])) {
    el("svg:line", { x1: sx(v), x2: sx(v), y1: M.t, y2: M.t + ph, class: "tx-grid" }, svg);
    el("svg:text", { x: sx(v), y: M.t + ph + 14, class: "tx-tick", "text-anchor": "middle" }, svg, String(v));
  }
  for (const v of ticks(yRange[0], yRange[1])) {
    el("svg:line", { x1: M.l, x2: M.l + pw, y1: sy(v), y2: sy(v), class: "tx-grid" }, svg);
    el("svg:text", { x: M.l - 5, y: sy(v) + 4, class: "tx-tick", "text-anchor": "end" }, svg, String(v));
  }
  el("svg:text", { x: M.l + pw / 2, y: H - 6, class: "tx-axis", "text-anchor": "middle" }, svg, xTitle);
  el("svg:text", { x: 12, y: M.t + ph / 2, class: "tx-axis", "text-anchor": "middle", transform: `rotate(-90 12 ${M.t + ph / 2})` }, svg, yTitle);
  return { svg, sx, sy, ph };
}

function niceStep(span) {
  const raw = span / 5, p = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / p;
  return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

function drawFigures(st, data) {
  st.figures.replaceChildren();
  const r = [-0.02, 1.02];
  const roc = panel(st.figures, data.titles.roc, "1 − specificity", "Sensitivity", r, r);
  el("svg:path", { d: data.roc.x.map((x, i) => `${i ? "L" : "M"}${roc.sx(x).toFixed(2)},${roc.sy(data.roc.y[i]).toFixed(2)}`).join(""), class: "tx-curve" }, roc.svg);
  st.rocPoint = el("svg:circle", { r: 7, class: "tx-point", "data-testid": "threshold-roc-point" }, roc.svg);

  const pr = panel(st.figures, data.titles.pr, "Recall", "Precision", r, r);
  let d = "";
  data.pr.x.forEach((x, i) => {  // a step curve: horizontal then vertical, like plotly's line shape "hv"
    const px = pr.sx(x).toFixed(2), py = pr.sy(data.pr.y[i]).toFixed(2);
    d += i ? `H${px}V${py}` : `M${px},${py}`;
  });
  el("svg:path", { d, class: "tx-curve" }, pr.svg);
  st.prPoint = el("svg:circle", { r: 7, class: "tx-point", "data-testid": "threshold-pr-point" }, pr.svg);

  const hist = data.histogram;
  const top = Math.max(1, ...hist.normal, ...hist.pneumonia) * 1.05;
  const h = panel(st.figures, data.titles.histogram, "Pneumonia score", "Images", r, [0, top]);
  for (const [series, cls] of [[hist.normal, "tx-bar-normal"], [hist.pneumonia, "tx-bar-pneumonia"]]) {
    series.forEach((count, i) => {
      if (!count) return;
      const x0 = h.sx(hist.left[i]), x1 = h.sx(hist.left[i] + hist.width);
      el("svg:rect", { x: x0, y: h.sy(count), width: Math.max(0.5, x1 - x0), height: h.sy(0) - h.sy(count), class: cls }, h.svg);
    });
  }
  el("svg:rect", { x: M.l + 8, y: M.t + 6, width: 10, height: 10, class: "tx-bar-normal" }, h.svg);
  el("svg:text", { x: M.l + 22, y: M.t + 15, class: "tx-tick" }, h.svg, data.class_names[0]);
  el("svg:rect", { x: M.l + 8, y: M.t + 21, width: 10, height: 10, class: "tx-bar-pneumonia" }, h.svg);
  el("svg:text", { x: M.l + 22, y: M.t + 30, class: "tx-tick" }, h.svg, data.class_names[1]);
  st.histLine = el("svg:line", { y1: M.t, y2: M.t + h.ph, class: "tx-threshold-line", "data-testid": "threshold-histogram-line" }, h.svg);
  st.histLabel = el("svg:text", { y: M.t + 44, class: "tx-threshold-label" }, h.svg, "");
  st.scale = { roc, pr, hist: h };
}

// ---------------------------------------------------------------------------------------------- the widget
function build(root) {
  const st = { root, value: 0, dragging: false, sent: null, view: null, data: null, texts: {} };
  st.track = root.querySelector(".tx-track");
  st.fill = root.querySelector(".tx-fill");
  st.thumb = root.querySelector(".tx-thumb");
  st.output = root.querySelector(".tx-value");
  st.figures = root.querySelector(".tx-figures");
  st.status = root.querySelector(".tx-status");
  st.announce = root.querySelector(".tx-announce");
  const metrics = root.querySelector(".tx-metrics");
  for (const [key, label, help] of METRICS) {
    const box = el("div", { class: "tx-metric", title: help, "data-metric": key }, metrics);
    el("div", { class: "tx-metric-label" }, box, label);
    st.texts[key] = [el("div", { class: "tx-metric-value", "data-testid": `threshold-metric-${key}` }, box, "")];
  }
  for (const node of root.querySelectorAll("[data-field]")) (st.texts[node.dataset.field] ||= []).push(node);

  const track = st.track;
  const fromPointer = (event) => {
    const frac = Math.min(1, Math.max(0, (event.clientX - st.rect.left) / st.rect.width));
    setValue(st, quantize(st, frac * st.max));
  };
  track.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    st.rect = track.getBoundingClientRect();
    st.dragging = true;
    track.setPointerCapture(event.pointerId);
    track.focus({ preventScroll: true });
    fromPointer(event);
    event.preventDefault();
  });
  track.addEventListener("pointermove", (event) => { if (st.dragging) fromPointer(event); });
  const end = () => { if (st.dragging) { st.dragging = false; release(st); } };
  track.addEventListener("pointerup", end);
  track.addEventListener("pointercancel", end);
  track.addEventListener("lostpointercapture", end);
  track.addEventListener("keydown", (event) => {
    const steps = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1, PageUp: 10, PageDown: -10 };
    let next = null;
    if (event.key in steps) next = quantize(st, st.value + steps[event.key] * st.step);
    else if (event.key === "Home") next = 0;
    else if (event.key === "End") next = st.max;
    if (next === null) return;
    event.preventDefault();
    setValue(st, next);
    st.keyMoved = true;
  });
  track.addEventListener("keyup", () => { if (st.keyMoved) { st.keyMoved = false; release(st); } });
  return st;
}

function quantize(st, v) {
  const q = Math.round(v / st.step) / Math.round(1 / st.step);  // k / 1000: the double Python parses from "0.k"
  return Math.min(st.max, Math.max(0, q));
}

function setText(st, key, text) {
  for (const node of st.texts[key] || []) if (node.textContent !== text) node.textContent = text;
}

function setValue(st, v) {
  st.value = v;
  const shown = formatted(numbersAt(st.data.sweep, v, st.data.prevalence));
  st.shown = shown;
  const frac = st.max > 0 ? v / st.max : 0;
  const pct = `${(frac * 100).toFixed(3)}%`;
  st.thumb.style.left = pct;
  st.fill.style.width = pct;
  st.output.textContent = shown.threshold;
  st.track.setAttribute("aria-valuenow", String(v));
  st.track.setAttribute("aria-valuetext", shown.threshold);
  for (const key of Object.keys(shown)) setText(st, key, shown[key]);
  const values = numbersAt(st.data.sweep, v, st.data.prevalence);
  const { roc, pr, hist } = st.scale;
  st.rocPoint.setAttribute("cx", roc.sx(1 - values.specificity));
  st.rocPoint.setAttribute("cy", roc.sy(values.recall));
  st.prPoint.setAttribute("cx", pr.sx(values.recall));
  st.prPoint.setAttribute("cy", pr.sy(values.precision));
  const hx = hist.sx(Math.min(v, 1.02));
  st.histLine.setAttribute("x1", hx);
  st.histLine.setAttribute("x2", hx);
  st.histLabel.setAttribute("x", hx + 4);
  st.histLabel.setAttribute("text-anchor", v > 0.7 ? "end" : "start");
  if (v > 0.7) st.histLabel.setAttribute("x", hx - 4);
  st.histLabel.textContent = `threshold ${pyFixed(v, 3)}`;
  st.root.dataset.threshold = shown.threshold;
  checkServer(st);
}

function release(st) {
  st.sent = st.value;
  st.root.dataset.server = "pending";
  st.status.textContent = "Saving…";
  st.setTrigger("release", st.value);
}

// The server sends its own numbers (core.metrics.operating_point_summary) for the threshold it holds.
function checkServer(st) {
  const server = st.data && st.data.server;
  if (!server || st.dragging || Number(server.value) !== st.value) {
    if (st.root.dataset.server !== "pending") st.root.dataset.server = st.dragging ? "dragging" : "unsaved";
    if (st.dragging) st.status.textContent = "Release to use this threshold on the Prediction page.";
    return;
  }
  const differs = Object.keys(server.numbers).filter((k) => server.numbers[k] !== st.shown[k]);
  st.root.dataset.server = differs.length ? "differs" : "agrees";
  st.status.textContent = differs.length
    ? `The server computed different numbers for ${differs.join(", ")}: trust the numbers below the widget.`
    : `Saved: threshold ${st.shown.threshold}, the server's numbers agree.`;
  st.status.classList.toggle("tx-warning", differs.length > 0);
  if (st.announce.textContent !== st.status.textContent) {
    st.announce.textContent = `Threshold ${st.shown.threshold}: sensitivity ${st.shown.recall}, specificity ${st.shown.specificity}.`;
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  const root = parentElement.querySelector(".tx");
  let st = INSTANCES.get(root);
  if (!st) { st = build(root); INSTANCES.set(root, st); }
  st.setTrigger = setTriggerValue;
  st.data = data;
  st.max = data.max;
  st.step = data.step;
  st.track.setAttribute("aria-valuemax", String(data.max));
  st.track.setAttribute("aria-label", data.label);
  root.querySelector(".tx-label").textContent = data.label;
  for (const [key, text] of Object.entries(data.texts)) setText(st, key, text);
  if (st.view !== data.view_id) { drawFigures(st, data); st.view = data.view_id; }
  // The server moves the handle when it set the threshold itself (a preset, another model: a new revision),
  // never on the echo of a release, and never under the user's pointer.
  if (st.revision !== data.revision && !st.dragging) {
    st.revision = data.revision;
    st.value = data.threshold;
  }
  if (!st.dragging) setValue(st, st.value);
  root.dataset.ready = "true";
}
