// ShapeFirst: the frequency chart inside the Frequency Trace and Forward Frequency nodes.
//
// Data arrive three ways, all in the payload format of nodes/frequency/report.py:
// - live while sampling: "shapefirst.frequency.start" (panels, total steps) then one
//   "shapefirst.frequency.step" per step, sent by the server to the client that queued the prompt;
// - when the node finishes: its UI output (onExecuted), the authoritative numbers;
// - on a cache hit: the host re-sends that UI output, so the chart is drawn again.
// Plain canvas 2D, no library, nothing loaded from elsewhere.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPES = new Set(["ShapeFirstFrequencyTrace", "ShapeFirstForwardFrequency"]);
const UI_KEY = "shapefirst_frequency";
const EVENT_START = "shapefirst.frequency.start";
const EVENT_STEP = "shapefirst.frequency.step";

const BG = "#1b1b1f";
const FG = "#d8d8d8";
const GRID = "#34343a";
const FRAME = "#5a5a62";
const CUTOFF = "#c58af0";
// Step strip: one tick per recorded step, coloured by the UNet branches it evaluated.
const STRIP_COLORS = { 2: "#ffc800", 1: "#00c8e6", none: "#7882be" };

const MARGIN = { left: 50, right: 10, top: 22, panelTitle: 15, gap: 10, strip: 10, axis: 16 };

function niceTicks(low, high, count = 4) {
  if (!(isFinite(low) && isFinite(high))) return [0];
  if (high <= low) high = low + (Math.abs(low) || 1);
  const raw = (high - low) / Math.max(count - 1, 1);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.floor(low / step) * step; v <= high + step / 2 && ticks.length < 50; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

function formatValue(value, digits = 3) {
  if (value === null || value === undefined) return "n/a";
  if (value === 0) return "0";
  const abs = Math.abs(value);
  if (abs >= 1e4 || abs < 1e-3) return value.toExponential(Math.max(digits - 2, 1));
  return String(Number(value.toPrecision(digits)));
}

function formatTicks(values) {
  let labels = values.map((v) => formatValue(v));
  for (let digits = 2; digits < 9; digits++) {
    labels = values.map((v) => formatValue(v, digits));
    if (new Set(labels).size === labels.length) break;
  }
  return labels;
}

function axisValue(panel, value) {
  if (value === null || value === undefined) return null;
  if (panel.log) return value > 0 ? Math.log10(value) : null;
  return value;
}

function panelRange(panel, points) {
  const values = [];
  for (const series of panel.series) {
    for (const point of points) {
      const v = axisValue(panel, point[series.key]);
      if (v !== null) values.push(v);
    }
  }
  if (!values.length) return { low: 0, high: 1, ticks: [0, 1] };
  let low = Math.min(...values);
  const high = Math.max(...values);
  if (!panel.log) low = Math.min(low, 0); // norms: keep zero in view, as the PIL plot does
  const ticks = niceTicks(low, high);
  return { low: Math.min(ticks[0], low), high: Math.max(ticks[ticks.length - 1], high), ticks };
}

// Where the run switched to one branch: the server's verdict when finished, else the
// first one-branch step that follows a two-branch step (live).
function cutoffOf(data) {
  if (data.cutoff) return data.cutoff;
  return switchOf(data.points, 2, 1, "one branch");
}

// Where full CFG began after one-branch steps (the cutoff's guidance start), the same way.
function guidanceStartOf(data) {
  if (data.guidance_start) return data.guidance_start;
  return switchOf(data.points, 1, 2, "full CFG");
}

function switchOf(points, from, to, what) {
  for (let i = 1; i < points.length; i++) {
    if (points[i].branches === to && points[i - 1].branches === from) {
      const after = points[i].step - 1;
      return { after_step: after, label: `${what} after step ${after}` };
    }
  }
  return null;
}

// The dashed lines, in step order (report.py's markers()).
function markersOf(data) {
  return [guidanceStartOf(data), cutoffOf(data)].filter((marker) => marker);
}

class FrequencyChart {
  constructor(minHeight) {
    this.minHeight = minHeight;
    this.element = document.createElement("div");
    this.element.className = "shapefirst-frequency-chart";
    Object.assign(this.element.style, {
      position: "relative", width: "100%", height: "100%", minHeight: `${minHeight}px`,
      background: BG, borderRadius: "4px", overflow: "hidden",
    });
    this.canvas = document.createElement("canvas");
    Object.assign(this.canvas.style, { width: "100%", height: "100%", display: "block" });
    this.tooltip = document.createElement("div");
    this.tooltip.className = "shapefirst-frequency-tooltip";
    Object.assign(this.tooltip.style, {
      position: "absolute", display: "none", pointerEvents: "none", whiteSpace: "pre",
      font: "11px monospace", color: "#eee", background: "rgba(0,0,0,0.85)", padding: "4px 6px",
      borderRadius: "3px", zIndex: 10,
    });
    this.element.append(this.canvas, this.tooltip);
    this.data = null;
    this.hoverStep = null;
    this.layout = null;
    this.canvas.addEventListener("pointermove", (event) => this.onPointerMove(event));
    this.canvas.addEventListener("pointerleave", () => this.setHover(null));
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.element);
    this.setState("empty");
    this.draw();
  }

  setState(state) {
    this.element.dataset.state = state;
  }

  start(spec) {
    this.data = { ...spec, points: [], cutoff: null, guidance_start: null };
    this.setState("live");
    this.draw();
  }

  addPoint(point) {
    if (!this.data) return;
    const points = this.data.points;
    const index = points.findIndex((p) => p.step === point.step);
    if (index >= 0) points[index] = point;
    else points.push(point);
    points.sort((a, b) => a.step - b.step);
    this.draw();
  }

  show(payload) {
    this.data = payload;
    this.setState("done");
    this.draw();
  }

  clear() {
    this.data = null;
    this.setState("empty");
    this.setHover(null);
  }

  dispose() {
    this.resizeObserver.disconnect();
  }

  stepRange() {
    const steps = this.data.points.map((p) => p.step);
    return { first: 1, last: Math.max(this.data.total_steps || 0, 2, ...steps) };
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.floor(this.element.clientWidth));
    const height = Math.max(1, Math.floor(this.element.clientHeight));
    if (this.canvas.width !== Math.round(width * ratio) || this.canvas.height !== Math.round(height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
    }
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.fillStyle = BG;
    ctx.fillRect(0, 0, width, height);
    ctx.font = "11px sans-serif";
    const points = this.data?.points ?? [];
    this.canvas.dataset.points = String(points.length);
    this.canvas.dataset.bothBranches = String(points.filter((p) => p.branches === 2).length);
    this.canvas.dataset.oneBranch = String(points.filter((p) => p.branches === 1).length);
    if (!this.data || !points.length) {
      ctx.fillStyle = FG;
      ctx.fillText(this.data ? "sampling… the first step is on its way" : "Queue the prompt: the chart fills in step by step.", 10, 20);
      this.layout = null;
      return;
    }
    const panels = this.data.panels;
    const plotLeft = MARGIN.left;
    const plotRight = width - MARGIN.right;
    const stripTop = height - MARGIN.strip - MARGIN.axis;
    const panelSpace = stripTop - MARGIN.top - 4;
    const panelHeight = panelSpace / panels.length - MARGIN.panelTitle - MARGIN.gap;
    const { first, last } = this.stepRange();
    const xAt = (step) => plotLeft + ((step - first) / (last - first)) * (plotRight - plotLeft);
    this.layout = { plotLeft, plotRight, first, last };

    ctx.fillStyle = FG;
    ctx.font = "bold 12px sans-serif";
    ctx.fillText(this.data.title ?? "", plotLeft, 15);
    ctx.font = "11px sans-serif";
    const markers = markersOf(this.data);
    let top = MARGIN.top + MARGIN.panelTitle;
    for (const panel of panels) {
      this.drawPanel(ctx, panel, points, top, panelHeight, xAt, plotLeft, plotRight);
      for (const marker of markers) {
        const x = Math.round(xAt(marker.after_step + 0.5)) + 0.5;
        ctx.save();
        ctx.strokeStyle = CUTOFF;
        ctx.setLineDash([4, 4]);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + panelHeight);
        ctx.stroke();
        ctx.restore();
      }
      top += panelHeight + MARGIN.panelTitle + MARGIN.gap;
    }
    markers.forEach((marker, index) => {
      ctx.fillStyle = CUTOFF;
      const label = marker.label;
      const x = Math.min(xAt(marker.after_step + 0.5) + 4, plotRight - ctx.measureText(label).width);
      // one line per marker, so the two labels never overlap
      ctx.fillText(label, Math.max(plotLeft, x), MARGIN.top + MARGIN.panelTitle + 12 + 13 * index);
    });
    this.drawStrip(ctx, points, stripTop, xAt, plotLeft, plotRight);
    if (this.hoverStep !== null) {
      const x = Math.round(xAt(this.hoverStep)) + 0.5;
      ctx.strokeStyle = "rgba(255,255,255,0.5)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x, MARGIN.top);
      ctx.lineTo(x, stripTop - 2);
      ctx.stroke();
    }
  }

  drawPanel(ctx, panel, points, top, height, xAt, left, right) {
    const bottom = top + height;
    const { low, high, ticks } = panelRange(panel, points);
    const yAt = (v) => bottom - ((v - low) / (high - low || 1)) * height;
    ctx.fillStyle = FG;
    ctx.fillText(panel.title + (panel.log ? " (log)" : ""), left, top - 4);
    const labels = formatTicks(ticks.map((t) => (panel.log ? 10 ** t : t)));
    ticks.forEach((tick, i) => {
      const y = Math.round(yAt(tick)) + 0.5;
      ctx.strokeStyle = GRID;
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(right, y);
      ctx.stroke();
      ctx.fillStyle = FG;
      ctx.fillText(labels[i], left - 4 - ctx.measureText(labels[i]).width, y + 4);
    });
    ctx.strokeStyle = FRAME;
    ctx.strokeRect(left + 0.5, top + 0.5, right - left - 1, height);
    // Legend on the title line, right-aligned.
    let legendX = right;
    for (const series of [...panel.series].reverse()) {
      const width = ctx.measureText(series.label).width;
      legendX -= width;
      ctx.fillStyle = FG;
      ctx.fillText(series.label, legendX, top - 4);
      legendX -= 16;
      ctx.fillStyle = series.color;
      ctx.fillRect(legendX, top - 9, 12, 3);
      legendX -= 10;
    }
    for (const series of panel.series) {
      const xy = [];
      for (const point of points) {
        const v = axisValue(panel, point[series.key]);
        if (v !== null) xy.push([xAt(point.step), yAt(v)]);
      }
      ctx.strokeStyle = series.color;
      ctx.fillStyle = series.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      xy.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.stroke();
      for (const [x, y] of xy) {
        ctx.beginPath();
        ctx.arc(x, y, 2, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
  }

  drawStrip(ctx, points, top, xAt, left, right) {
    // Whole pixels and gaps between ticks, so every step stays a separate mark.
    const spacing = (right - left) / Math.max(this.layout.last - this.layout.first, 1);
    const tickWidth = Math.max(1, Math.min(6, Math.floor(spacing / 2)));
    for (const point of points) {
      const x = Math.round(xAt(point.step) - tickWidth / 2);
      ctx.fillStyle = STRIP_COLORS[point.branches] ?? STRIP_COLORS.none;
      ctx.fillRect(x, Math.round(top), tickWidth, MARGIN.strip);
    }
    ctx.fillStyle = FG;
    for (const step of niceTicks(this.layout.first, this.layout.last, 8)) {
      if (!Number.isInteger(step) || step < this.layout.first || step > this.layout.last) continue;
      const label = String(step);
      ctx.fillText(label, xAt(step) - ctx.measureText(label).width / 2, top + MARGIN.strip + 12);
    }
  }

  onPointerMove(event) {
    if (!this.layout || !this.data?.points.length) return;
    const rect = this.canvas.getBoundingClientRect();
    // The graph canvas may be zoomed: map from screen pixels to our own layout pixels.
    const scale = rect.width / this.element.clientWidth || 1;
    const x = (event.clientX - rect.left) / scale;
    const { plotLeft, plotRight, first, last } = this.layout;
    const step = Math.round(first + ((x - plotLeft) / (plotRight - plotLeft)) * (last - first));
    const point = this.data.points.reduce((best, p) =>
      Math.abs(p.step - step) < Math.abs(best.step - step) ? p : best);
    this.setHover(point, (event.clientX - rect.left) / scale, (event.clientY - rect.top) / scale);
  }

  setHover(point, x = 0, y = 0) {
    if (!point) {
      this.hoverStep = null;
      this.tooltip.style.display = "none";
      this.draw();
      return;
    }
    this.hoverStep = point.step;
    const lines = [`step ${point.step} of ${this.data.total_steps}   sigma ${formatValue(point.sigma, 4)}`];
    for (const panel of this.data.panels) {
      for (const series of panel.series) {
        lines.push(`${series.label.padEnd(13)} ${formatValue(point[series.key], 4)}`);
      }
    }
    if (point.branches) lines.push(`UNet branches  ${point.branches}`);
    this.tooltip.textContent = lines.join("\n");
    this.tooltip.style.display = "block";
    const width = this.tooltip.offsetWidth;
    const left = x + 12 + width > this.element.clientWidth ? x - 12 - width : x + 12;
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${Math.max(0, Math.min(y, this.element.clientHeight - this.tooltip.offsetHeight))}px`;
    this.draw();
  }
}

// The root graph: app.rootGraph (app.graph is deprecated in newer frontends; older ones may
// lack rootGraph).
function rootGraph() {
  return app.rootGraph ?? app.graph;
}

// An execution id is the node id, or "outer:inner" for a node inside a subgraph.
function nodeByExecutionId(executionId) {
  let graph = rootGraph();
  let node = null;
  for (const part of String(executionId).split(":")) {
    node = graph?.getNodeById?.(part) ?? null;
    if (!node) return null;
    graph = node.subgraph;
  }
  return node;
}

app.registerExtension({
  // Under the pack's lower-case namespace: extensions with the same name replace each other.
  name: "shapefirst.FrequencyChart",

  async setup() {
    api.addEventListener(EVENT_START, ({ detail }) => nodeByExecutionId(detail.node)?.shapefirstChart?.start(detail));
    api.addEventListener(EVENT_STEP, ({ detail }) => nodeByExecutionId(detail.node)?.shapefirstChart?.addPoint(detail.point));
  },

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!NODE_TYPES.has(nodeData.name)) return;
    const minHeight = nodeData.name === "ShapeFirstFrequencyTrace" ? 400 : 240;

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const chart = new FrequencyChart(minHeight);
      const widget = this.addDOMWidget("frequency_chart", "shapefirst_frequency_chart", chart.element, {
        serialize: false, // nothing to save in the workflow or send with the prompt
        getMinHeight: () => minHeight,
      });
      widget.serialize = false;
      this.shapefirstChart = chart;
      this.setSize([Math.max(this.size[0], 420), this.computeSize()[1]]);
      return result;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const payload = message?.[UI_KEY]?.[0];
      if (payload) this.shapefirstChart?.show(payload);
    };

    const onRemoved = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.shapefirstChart?.dispose();
      return onRemoved?.apply(this, arguments);
    };
  },
});
