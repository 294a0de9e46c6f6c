// The explorer's panels. Everything is computed here, from the files beside this one: manifest.json
// (shapes, settings, the data set's words, each latent dimension's KL), weights.bin (the networks),
// test.bin (test images, as seen and as the guide sees them, and labels) and map.bin (the views of the
// test codes). Each panel draws images with the one helper `paint`; every sentence that names the
// images takes its words from the manifest, so a garment is never called a digit.
import { VAE, view } from "./nets.js";

const $ = (id) => document.getElementById(id);
const SIZE = 28;
const PIXELS = SIZE * SIZE;
// Matplotlib's tab10, the colours of results/latent_map.png.
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];

// ---------------------------------------------------------------------------------------------
// Random numbers: a seeded generator (mulberry32) and normals by Box-Muller, so a seed gives the same draws.

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function normals(seed, count) {
  const uniform = mulberry32(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - uniform()));  // 1 - u: never log(0)
    const angle = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(angle);
    if (i + 1 < count) out[i + 1] = r * Math.sin(angle);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The one drawing helper: 784-vectors of values in [0, 1] into a canvas, `cols` to a row, white on black
// and rounded to 0..255 as images.py draws the PNGs. `threshold` draws each pixel black or white.

function grey(v, threshold) {
  return threshold === null ? Math.round(Math.min(1, Math.max(0, v)) * 255) : (v >= threshold ? 255 : 0);
}

// Whether `paint` would draw the image as one flat value (an empty or a full cell).
function flat(image, threshold = null) {
  const first = grey(image[0], threshold);
  return image.every((v) => grey(v, threshold) === first);
}

export function paint(canvas, images, { cols = 1, threshold = null } = {}) {
  const rows = Math.ceil(images.length / cols);
  if (canvas.width !== cols * SIZE || canvas.height !== rows * SIZE) {
    canvas.width = cols * SIZE;
    canvas.height = rows * SIZE;
  }
  const context = canvas.getContext("2d");
  const picture = context.createImageData(canvas.width, canvas.height);
  const rgba = picture.data;
  images.forEach((image, k) => {
    const top = Math.floor(k / cols) * SIZE, left = (k % cols) * SIZE;
    for (let y = 0; y < SIZE; y++) {
      for (let x = 0; x < SIZE; x++) {
        const at = ((top + y) * canvas.width + left + x) * 4;
        rgba[at] = rgba[at + 1] = rgba[at + 2] = grey(image[y * SIZE + x], threshold);
        rgba[at + 3] = 255;
      }
    }
  });
  context.putImageData(picture, 0, 0);
}

// ---------------------------------------------------------------------------------------------
// Loading

async function load() {
  const manifest = await (await fetch("manifest.json")).json();
  if (manifest.format !== 2) throw new Error(`manifest format ${manifest.format}: re-export with this pyro-vae`);
  const names = [...new Set([...Object.values(manifest.layers), ...Object.values(manifest.arrays)].map((e) => e.file))];
  const buffers = {};
  await Promise.all(names.map(async (name) => {
    const answer = await fetch(name);
    if (!answer.ok) throw new Error(`${name}: ${answer.status}`);
    buffers[name] = await answer.arrayBuffer();
  }));
  const array = (name) => view(buffers[manifest.arrays[name].file], manifest.arrays[name]);
  return {
    manifest,
    vae: new VAE(manifest, buffers[Object.values(manifest.layers)[0].file]),
    images: array("images"), bits: array("bits"), labels: array("labels"),
    mean: array("mean"), directions: array("directions"), variance: array("variance"),
    planes: Object.fromEntries(Object.keys(manifest.map.planes).map(
      (name) => [name, { coords: array(`${name}_coords`), lift: array(`${name}_lift`) }])),
    count: manifest.arrays.labels.shape[0],
  };
}

// ---------------------------------------------------------------------------------------------
// The model's operations on test images

let M;  // what load() returned

function intensities(i) {  // what a person sees: (784) in [0, 1]
  const out = new Float32Array(PIXELS);
  for (let p = 0; p < PIXELS; p++) out[p] = M.images[i * PIXELS + p] / 255;
  return out;
}

function binarized(i) {  // what the guide sees: the test image binarized once, as every command does
  const out = new Float32Array(PIXELS);
  const bytes = PIXELS / 8;
  for (let p = 0; p < PIXELS; p++) out[p] = (M.bits[i * bytes + (p >> 3)] >> (7 - (p & 7))) & 1;
  return out;
}

function className(i) {
  return M.manifest.dataset.classes[M.labels[i]];
}

// The data set's words for its images (manifest.dataset.words: item, items, an_item, made, real).
function word(key, { cap = false } = {}) {
  const text = M.manifest.dataset.words[key];
  return cap ? text[0].toUpperCase() + text.slice(1) : text;
}

function fillWords() {
  for (const el of document.querySelectorAll("[data-word]")) {
    el.textContent = word(el.dataset.word, { cap: el.hasAttribute("data-cap") });
  }
}

function clampIndex(input) {
  const i = Math.min(M.count - 1, Math.max(0, Math.round(Number(input.value) || 0)));
  input.value = i;
  return i;
}

// `count` latents from the guide widened by `noise`: z = z_loc + exp(z_logstd + noise) * eps, for fixed eps.
function widened(code, noise, eps, count) {
  const zs = [];
  for (let k = 0; k < count; k++) {
    const z = new Float32Array(M.vae.zDim);
    for (let d = 0; d < z.length; d++) z[d] = code.zLoc[d] + Math.exp(code.zLogstd[d] + noise) * eps[k * z.length + d];
    zs.push(z);
  }
  return zs;
}

function noiseSlider(id, onChange) {
  const input = $(id), output = $(`${id}-value`);
  input.max = M.manifest.defaults.max_noise;
  const update = () => { output.textContent = Number(input.value).toFixed(2); onChange(Number(input.value)); };
  input.addEventListener("input", update);
  // The blog's two spreads, written beside the slider's ticks.
  const marks = document.createElement("span");
  marks.className = "marks";
  marks.textContent = `the blog's ${M.manifest.defaults.noise_marks.join(", ")}`;
  input.parentElement.after(marks);
  return () => Number(input.value);
}

// ---------------------------------------------------------------------------------------------
// More of this image

function morePanel() {
  const GRID = 100;
  let code, seed = 1;
  let eps = normals(seed, GRID * M.vae.zDim);
  const index = $("more-index");
  const buttons = $("more-classes");
  const noise = noiseSlider("more-noise", () => drawGrid());

  function drawGrid() {
    paint($("more-grid"), widened(code, noise(), eps, GRID).map((z) => M.vae.xProbs(z)), { cols: 10 });
  }
  function choose(i, label = null) {
    index.value = i;
    code = M.vae.encoder.forward(binarized(i));
    paint($("more-source"), [binarized(i)]);
    paint($("more-mean"), [M.vae.xProbs(code.zLoc)]);
    $("more-caption").textContent = `test image #${i} (labelled ${className(i)}) as the guide sees it`;
    for (const b of buttons.children) b.classList.toggle("chosen", Number(b.dataset.label) === label);
    drawGrid();
  }
  M.manifest.dataset.exemplars.forEach((i, label) => {
    if (i < 0 || i >= M.count) return;  // -1: a class with no test image
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = M.manifest.dataset.classes[label];
    b.dataset.label = label;
    b.title = `test image #${i}`;
    b.addEventListener("click", () => choose(i, label));
    buttons.append(b);
  });
  index.max = M.count - 1;
  index.addEventListener("change", () => choose(clampIndex(index)));
  $("more-redraw").addEventListener("click", () => { eps = normals(++seed, GRID * M.vae.zDim); drawGrid(); });
  // Class 3 first (a 3, a Dress), else the first class with a test image, else test image 0.
  const exemplars = M.manifest.dataset.exemplars, usable = (label) => exemplars[label] >= 0 && exemplars[label] < M.count;
  const first = usable(3) ? 3 : exemplars.findIndex((_, label) => usable(label));
  if (first >= 0) choose(exemplars[first], first); else choose(0);
}

// ---------------------------------------------------------------------------------------------
// Draw

function drawPanel() {
  const GRID = 36;
  const pad = $("draw-pad");
  const pen = pad.getContext("2d");
  const small = document.createElement("canvas");
  small.width = small.height = SIZE;
  const eps = normals(7, GRID * M.vae.zDim);
  let last = null, pending = false, code = null;
  const noise = noiseSlider("draw-noise", () => code && drawMore());

  function clear() {
    pen.fillStyle = "black";
    pen.fillRect(0, 0, pad.width, pad.height);
    code = null;
    for (const id of ["draw-input", "draw-recon", "draw-more"]) {
      const c = $(id);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
    }
  }

  // As MNIST was made: the stroke's bounding box scaled into 20x20, then centred by its mass in 28x28.
  function input() {
    const { width, height } = pad;
    const rgba = pen.getImageData(0, 0, width, height).data;
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (rgba[(y * width + x) * 4] > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
    if (x1 < 0) return null;
    const side = Math.max(x1 - x0 + 1, y1 - y0 + 1), box = 20 * (x1 - x0 + 1) / side, boxH = 20 * (y1 - y0 + 1) / side;
    const s = small.getContext("2d", { willReadFrequently: true });
    s.fillStyle = "black";
    s.fillRect(0, 0, SIZE, SIZE);
    s.imageSmoothingEnabled = true;
    s.imageSmoothingQuality = "high";
    s.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (SIZE - box) / 2, (SIZE - boxH) / 2, box, boxH);
    const grey = s.getImageData(0, 0, SIZE, SIZE).data;
    let mass = 0, mx = 0, my = 0;
    for (let p = 0; p < PIXELS; p++) { const v = grey[p * 4] / 255; mass += v; mx += v * (p % SIZE); my += v * Math.floor(p / SIZE); }
    const dx = Math.round((SIZE - 1) / 2 - mx / mass), dy = Math.round((SIZE - 1) / 2 - my / mass);
    const x = new Float32Array(PIXELS);
    for (let y = 0; y < SIZE; y++) for (let c = 0; c < SIZE; c++) {
      const from = (y - dy) * SIZE + (c - dx);
      if (y - dy >= 0 && y - dy < SIZE && c - dx >= 0 && c - dx < SIZE) x[y * SIZE + c] = grey[from * 4] >= 128 ? 1 : 0;
    }
    return x;
  }

  function drawMore() {
    paint($("draw-more"), widened(code, noise(), eps, GRID).map((z) => M.vae.xProbs(z)), { cols: 6 });
  }
  function update() {
    pending = false;
    const x = input();
    if (!x) return;
    code = M.vae.encoder.forward(x);
    paint($("draw-input"), [x]);
    paint($("draw-recon"), [M.vae.xProbs(code.zLoc)]);
    drawMore();
  }
  function at(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
  }
  function stroke(to) {
    pen.strokeStyle = "white";
    pen.lineWidth = 22;
    pen.lineCap = pen.lineJoin = "round";
    pen.beginPath();
    pen.moveTo(...(last ?? to));
    pen.lineTo(...to);
    pen.stroke();
    last = to;
    if (!pending) { pending = true; requestAnimationFrame(update); }  // one update a frame, however fast the pen
  }
  pad.addEventListener("pointerdown", (event) => { pad.setPointerCapture(event.pointerId); last = null; stroke(at(event)); });
  pad.addEventListener("pointermove", (event) => { if (last) stroke(at(event)); });
  for (const end of ["pointerup", "pointercancel"]) pad.addEventListener(end, () => { last = null; });
  $("draw-clear").addEventListener("click", clear);
  clear();
}

// ---------------------------------------------------------------------------------------------
// Map

function mapPanel() {
  const canvas = $("map-canvas");
  const context = canvas.getContext("2d");
  const count = M.count;
  const points = document.createElement("canvas");
  points.width = canvas.width;
  points.height = canvas.height;
  const screen = new Float32Array(2 * count);
  let plane, toPlane, hover = null, clicked = null, dragging = false;

  // The view of one plane: the middle 99.8% of the points on each axis, with a margin; all points drawn once.
  function show(name) {
    plane = M.planes[name];
    const range = (axis) => {
      const v = Array.from({ length: count }, (_, i) => plane.coords[2 * i + axis]).sort((a, b) => a - b);
      const lo = v[Math.floor(0.001 * (count - 1))], hi = v[Math.ceil(0.999 * (count - 1))];
      const pad = 0.06 * (hi - lo || 1);
      return [lo - pad, hi + pad];
    };
    const [xlo, xhi] = range(0), [ylo, yhi] = range(1);
    toPlane = (px, py) => [xlo + px / canvas.width * (xhi - xlo), ylo + (1 - py / canvas.height) * (yhi - ylo)];
    const p = points.getContext("2d");
    p.fillStyle = "#111";
    p.fillRect(0, 0, points.width, points.height);
    for (let i = 0; i < count; i++) {
      const sx = (plane.coords[2 * i] - xlo) / (xhi - xlo) * canvas.width;
      const sy = (1 - (plane.coords[2 * i + 1] - ylo) / (yhi - ylo)) * canvas.height;
      screen[2 * i] = sx;
      screen[2 * i + 1] = sy;
      p.fillStyle = COLOURS[M.labels[i] % COLOURS.length];
      p.fillRect(sx - 1, sy - 1, 2.5, 2.5);
    }
    const share = M.manifest.map.variance_share;
    $("map-axes").textContent = name === "pca"
      ? `across: PCA direction 1 (${(100 * share[0]).toFixed(0)}% of the codes' variance); up: direction 2 ` +
        `(${(100 * (share[1] ?? 0)).toFixed(0)}%). The classes overlap: the model spreads them over all ` +
        `${M.vae.zDim} dimensions.`
      : "across and up: the two directions that best separate the classes (Fisher's LDA, which uses the labels; " +
        "the model never saw them).";
    hover = clicked = null;
    redraw();
  }
  function redraw() {
    context.drawImage(points, 0, 0);
    context.strokeStyle = "white";
    if (hover !== null) {
      context.lineWidth = 2;
      context.beginPath();
      context.arc(screen[2 * hover], screen[2 * hover + 1], 6, 0, 2 * Math.PI);
      context.stroke();
    }
    if (clicked) {
      const [cx, cy] = clicked;
      context.lineWidth = 3;
      context.beginPath();
      context.moveTo(cx - 9, cy); context.lineTo(cx + 9, cy); context.moveTo(cx, cy - 9); context.lineTo(cx, cy + 9);
      context.stroke();
    }
  }
  function pixel(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  }
  function nearest(px, py) {
    let best = null, bestD = 12 * 12;  // within 12 pixels
    for (let i = 0; i < count; i++) {
      const d = (screen[2 * i] - px) ** 2 + (screen[2 * i + 1] - py) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }
  // A point (a, b) of the plane is a latent vector: mean + a lift[0] + b lift[1], the average code there.
  function decode(px, py) {
    const [a, b] = toPlane(px, py);
    const z = new Float32Array(M.vae.zDim);
    for (let d = 0; d < z.length; d++) z[d] = M.mean[d] + a * plane.lift[d] + b * plane.lift[z.length + d];
    clicked = [px, py];
    paint($("map-decoded"), [M.vae.xProbs(z)]);
    $("map-decoded-caption").textContent = `decoded at (${a.toFixed(2)}, ${b.toFixed(2)}) of the plane`;
    redraw();
  }
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = pixel(event);
    if (dragging) { decode(px, py); return; }
    hover = nearest(px, py);
    if (hover !== null) {
      paint($("map-hover"), [intensities(hover)]);
      $("map-hover-caption").textContent = `test image #${hover}, labelled ${className(hover)}`;
    }
    redraw();
  });
  canvas.addEventListener("pointerdown", (event) => { dragging = true; canvas.setPointerCapture(event.pointerId); decode(...pixel(event)); });
  for (const end of ["pointerup", "pointercancel"]) canvas.addEventListener(end, () => { dragging = false; });

  const choice = $("map-plane");
  Object.entries(M.manifest.map.planes).forEach(([name, label], k) => {
    const option = document.createElement("label");
    const radio = Object.assign(document.createElement("input"), { type: "radio", name: "map-plane", value: name, checked: k === 0 });
    radio.addEventListener("change", () => show(name));
    option.append(radio, ` ${label}`);
    choice.append(option);
  });
  const legend = $("map-legend");
  M.manifest.dataset.classes.forEach((name, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[k % COLOURS.length];
    item.append(swatch, name);
    legend.append(item);
  });
  paint($("map-hover"), [new Float32Array(PIXELS)]);
  paint($("map-decoded"), [new Float32Array(PIXELS)]);
  show(Object.keys(M.planes)[0]);
}

// ---------------------------------------------------------------------------------------------
// Latent dimensions: KL per dimension and the active ones, as computed at export (manifest.latent)

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes = {}, text = null) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (text !== null) el.textContent = text;
  return el;
}

// Every dimension's index, the most KL first.
function dimensionsByKl() {
  const { kl } = M.manifest.latent;
  return Array.from(kl.keys()).sort((a, b) => kl[b] - kl[a] || a - b);
}

function dimsPanel() {
  const { kl, activity, active, threshold } = M.manifest.latent;
  const zDim = kl.length, order = dimensionsByKl();
  const count = active.filter(Boolean).length;
  const total = kl.reduce((a, b) => a + b, 0);
  $("dims-threshold").textContent = String(threshold);
  const vamp = M.manifest.latent.prior === "vamp";
  if (vamp) {  // a VampPrior does not factorise, so each dimension is scored against its own marginal
    $("dims-kl").textContent = `its KL from the prior's marginal along it (the prior is ` +
      `${M.manifest.latent.about_prior}), averaged over the test images, in nats, by Monte Carlo (these do not ` +
      "add up to the ELBO's KL term)";
  }
  $("dims-count").textContent = `${count} of ${zDim} dimensions active` +
    (vamp ? "" : `; their KL adds up to ${total.toFixed(1)} nats per image`);
  const [width, height, left, right, top, bottom] = [880, 240, 46, 8, 30, 34];
  const step = Math.min(40, (width - left - right) / zDim), bar = Math.max(1, step * 0.72);
  const most = Math.max(...kl, 1e-6);
  const tick = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50].find((t) => most / t <= 5) ?? 100;
  const y = (v) => top + (height - top - bottom) * (1 - Math.max(0, v) / most);
  const plot = $("dims-bars");
  plot.replaceChildren();
  plot.setAttribute("viewBox", `0 0 ${width} ${height}`);
  for (let v = 0; v <= most + 1e-9; v += tick) {
    plot.append(svg("line", { x1: left - 4, x2: width - right, y1: y(v), y2: y(v) }),
                svg("text", { x: left - 8, y: y(v) + 4, "text-anchor": "end" }, String(Number(v.toFixed(2)))));
  }
  plot.append(svg("text", { x: 4, y: 14 }, "KL, nats"));
  const labelEvery = Math.ceil(18 / step);  // dimension numbers at least 18 pixels apart
  order.forEach((u, rank) => {
    const x = left + rank * step + (step - bar) / 2;
    const h = Math.max(2, y(0) - y(kl[u]));  // an empty bar keeps a visible outline
    const rect = svg("rect", { x, y: y(0) - h, width: bar, height: h, class: active[u] ? "active" : "inactive",
                               "data-dimension": u });
    rect.append(svg("title", {}, `z[${u}]: KL ${kl[u].toFixed(3)} nats; variance of the guide's mean over the ` +
      `test images ${activity[u].toFixed(3)}: ${active[u] ? "active" : "inactive"}`));
    plot.append(rect);
    if (rank % labelEvery === 0) {
      plot.append(svg("text", { x: x + bar / 2, y: height - bottom + 15, "text-anchor": "middle" }, String(u)));
    }
  });
  plot.append(svg("text", { x: left, y: height - 4 }, "dimension u of z, sorted by KL"));
  // The legend, in shapes as well as colours: filled for active, hollow for inactive.
  const legend = [[`active (variance > ${threshold})`, "active"], ["inactive", "inactive"]];
  let at = width - right - 330;
  for (const [label, kind] of legend) {
    plot.append(svg("rect", { x: at, y: 6, width: 14, height: 14, class: kind }),
                svg("text", { x: at + 20, y: 18 }, label));
    at += 200;
  }
}

// ---------------------------------------------------------------------------------------------
// Walk

function walkPanel() {
  const zDim = M.vae.zDim, k = M.directions.length / zDim;
  const { activity, active } = M.manifest.latent;
  const activeDims = dimensionsByKl().filter((u) => active[u]);
  // A way to walk: unit directions (rows of zDim), the test codes' standard deviation along each, names.
  const ways = {
    principal: { directions: M.directions, sd: Array.from(M.variance, Math.sqrt),
                 names: Array.from({ length: k }, (_, j) => `direction ${j + 1}`),
                 note: `The ${k} directions along which the test codes spread the most (PCA); each mixes ` +
                   `all ${zDim} dimensions of z.` },
    active: (() => {
      const dims = activeDims.slice(0, k);
      const directions = new Float32Array(dims.length * zDim);
      dims.forEach((u, j) => { directions[j * zDim + u] = 1; });
      return { directions, sd: dims.map((u) => Math.sqrt(activity[u])), names: dims.map((u) => `z[${u}]`),
               note: activeDims.length === 0 ? "No dimension is active: the model does not use z."
                 : `One dimension of z a slider: the ${dims.length} active ones with the most KL` +
                   (activeDims.length > dims.length ? ` (of ${activeDims.length} active)` : "") + "." };
    })(),
  };
  let way = ways.principal, sliders = [], base;
  const index = $("walk-index");

  function decode() {
    const z = Float32Array.from(base);
    sliders.forEach((s, j) => {
      const step = Number(s.value) * way.sd[j];
      for (let d = 0; d < zDim; d++) z[d] += step * way.directions[j * zDim + d];
      s.nextElementSibling.textContent = `${Number(s.value) >= 0 ? "+" : ""}${Number(s.value).toFixed(1)} sd`;
    });
    paint($("walk-digit"), [M.vae.xProbs(z)]);
  }
  function start() {
    const i = clampIndex(index);
    base = M.vae.encoder.forward(binarized(i)).zLoc;
    $("walk-caption").textContent = `test image #${i} (labelled ${className(i)}): its code, moved along the sliders`;
    decode();
  }
  function walkAlong(name) {
    way = ways[name];
    const labels = way.names.map((title, j) => {
      const label = document.createElement("label");
      label.className = "slider";
      const s = Object.assign(document.createElement("input"), { type: "range", min: -3, max: 3, step: 0.01, value: 0 });
      s.id = `walk-direction-${j}`;
      s.addEventListener("input", decode);
      const name = Object.assign(document.createElement("span"), { textContent: title });
      label.append(name, s, document.createElement("output"));
      return label;
    });
    sliders = labels.map((label) => label.querySelector("input"));
    $("walk-sliders").replaceChildren(...labels);
    $("walk-note").textContent = way.note;
    if (base) decode();
  }
  for (const radio of document.querySelectorAll("input[name=walk-along]")) {
    radio.disabled = radio.value === "active" && activeDims.length === 0;
    radio.addEventListener("change", () => walkAlong(radio.value));
  }
  walkAlong("principal");
  $("walk-reset").addEventListener("click", () => { sliders.forEach((s) => { s.value = 0; }); decode(); });
  index.max = M.count - 1;
  const first = M.manifest.dataset.exemplars[0];
  index.value = first >= 0 && first < M.count ? first : 0;
  index.addEventListener("change", start);
  start();

  // Interpolation between two test images' codes.
  const from = $("walk-from"), to = $("walk-to"), t = $("walk-t");
  let ends;
  const along = (s) => {
    const z = new Float32Array(zDim);
    for (let d = 0; d < zDim; d++) z[d] = (1 - s) * ends[0][d] + s * ends[1][d];
    return M.vae.xProbs(z);
  };
  function line() {
    paint($("walk-line-digit"), [along(Number(t.value))]);
    $("walk-t-value").textContent = Number(t.value).toFixed(2);
  }
  function chooseEnds() {
    const [i, j] = [clampIndex(from), clampIndex(to)];
    ends = [i, j].map((k) => M.vae.encoder.forward(binarized(k)).zLoc);
    $("walk-strip-caption").textContent = `ten steps from test image #${i} (labelled ${className(i)}) to #${j} ` +
      `(labelled ${className(j)}), each decoded`;
    paint($("walk-strip"), Array.from({ length: 10 }, (_, s) => along(s / 9)), { cols: 10 });
    line();
  }
  for (const input of [from, to]) { input.max = M.count - 1; input.addEventListener("change", chooseEnds); }
  const [a, b] = M.manifest.defaults.interpolate;
  from.value = Math.min(a, M.count - 1);
  to.value = Math.min(b, M.count - 1);
  t.addEventListener("input", line);
  chooseEnds();
}

// ---------------------------------------------------------------------------------------------
// Real or machine?

// The answer's badge: a filled blue disc with a tick (right), a hollow vermillion square with a cross (wrong).
function badge(right) {
  const mark = svg("svg", { viewBox: "0 0 16 16", class: `badge ${right ? "right" : "wrong"}`, role: "img",
                            "aria-label": right ? "right" : "wrong" });
  mark.append(right ? svg("circle", { cx: 8, cy: 8, r: 8 }) : svg("rect", { x: 1, y: 1, width: 14, height: 14 }),
              svg("path", { d: right ? "M4 8.5 L7 11.5 L12.5 5" : "M4.5 4.5 L11.5 11.5 M11.5 4.5 L4.5 11.5" }));
  return mark;
}

function quizPanel() {
  const CELLS = 36, COLS = 6, TRIES = 20;
  const grid = $("quiz-grid"), score = $("quiz-score");
  // Black-and-white data (MNIST) plays the blog's game, thresholded; any other as grey levels. Either
  // way real and generated cells are drawn alike.
  const threshold = M.manifest.defaults.quiz_threshold;
  const drawn = threshold === null ? "grey" : "threshold";
  for (const el of document.querySelectorAll("#quiz .drawn")) el.hidden = el.dataset.drawn !== drawn;
  $("quiz-key-right").replaceChildren(badge(true), " (a blue disc)");
  $("quiz-key-wrong").replaceChildren(badge(false), " (a vermillion square)");
  let round = 0, answers = [], checked = false;
  const real = $("quiz-real");
  real.value = M.manifest.defaults.quiz_real_fraction;
  $("quiz-noise").value = M.manifest.defaults.quiz_noise;
  const showReal = () => { $("quiz-real-value").textContent = `${Math.round(100 * Number(real.value))}%`; };
  real.addEventListener("input", showReal);
  showReal();
  const noise = noiseSlider("quiz-noise", () => {});
  $("quiz-noise-value").textContent = noise().toFixed(2);

  // Cell c's image: a test image, or one draw of the widened guide around one, decoded. A cell that
  // would come out flat (all black, say: a blank cell gives the game away) takes the next test image
  // and fresh draws.
  function cellImage(c, human, order, eps) {
    const zDim = M.vae.zDim;
    let image = null, source = 0;
    for (let attempt = 0; attempt < TRIES; attempt++) {
      source = order[(c + attempt * CELLS) % M.count];  // a distinct test image per cell, where there are enough
      const draws = attempt === 0 ? eps.subarray(c * zDim) : normals(100_000 * round + 100 * c + attempt, zDim);
      image = human ? intensities(source)
        : M.vae.xProbs(widened(M.vae.encoder.forward(binarized(source)), noise(), draws, 1)[0]);
      if (!flat(image, threshold)) break;
    }
    return { image, source };
  }

  function newRound() {
    const uniform = mulberry32(1000 + ++round);
    const order = Array.from({ length: M.count }, (_, i) => i);
    for (let i = order.length - 1; i > 0; i--) { const j = Math.floor(uniform() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    const places = Array.from({ length: CELLS }, (_, i) => i);
    for (let i = places.length - 1; i > 0; i--) { const j = Math.floor(uniform() * (i + 1)); [places[i], places[j]] = [places[j], places[i]]; }
    const humans = new Set(places.slice(0, Math.round(CELLS * Number(real.value))));
    const eps = normals(round, CELLS * M.vae.zDim);
    grid.replaceChildren();
    answers = [];
    checked = false;
    score.textContent = "";
    for (let c = 0; c < CELLS; c++) {
      const human = humans.has(c);
      const { image, source } = cellImage(c, human, order, eps);
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "quiz-cell";
      cell.setAttribute("aria-pressed", "false");
      const canvas = document.createElement("canvas");
      paint(canvas, [image], { threshold });
      const answer = document.createElement("div");
      answer.className = "quiz-answer";
      cell.append(canvas, answer);
      cell.addEventListener("click", () => {
        if (checked) return;
        cell.setAttribute("aria-pressed", String(cell.getAttribute("aria-pressed") !== "true"));
      });
      grid.append(cell);
      answers.push({ cell, answer, human, source });
    }
    grid.style.gridTemplateColumns = `repeat(${COLS}, auto)`;
  }
  function check() {
    checked = true;
    let right = 0, found = 0, wrongHumans = 0;
    const machines = answers.filter((a) => !a.human).length;
    for (const { cell, answer, human } of answers) {
      const marked = cell.getAttribute("aria-pressed") === "true";
      const correct = marked !== human;
      cell.classList.add(human ? "human" : "machine");
      cell.classList.toggle("wrong", !correct);
      answer.replaceChildren(badge(correct), human ? word("real") : "machine");
      if (correct) right++;
      if (marked && !human) found++;
      if (marked && human) wrongHumans++;
    }
    score.textContent = `Score: ${right} of ${answers.length} right. You found ${found} of the ${machines} machine ` +
      `${word("items")} and took ${wrongHumans} ${word("real")} ones for a machine's.`;
  }
  $("quiz-check").addEventListener("click", check);
  $("quiz-new").addEventListener("click", newRound);
  newRound();
}

// ---------------------------------------------------------------------------------------------

try {
  M = await load();
  const c = M.manifest.checkpoint;
  // Every panel draws from the guide around real images or decodes chosen z; none samples p(z), so a
  // learned prior is named here once rather than drawn from.
  const prior = M.manifest.latent.prior === "vamp" ? ` Its prior is ${M.manifest.latent.about_prior}: the panels ` +
    "draw from the guide and decode chosen codes, never from the prior (generate --mode prior does)." : "";
  $("model-info").textContent = `Model ${c.path}, epoch ${c.epoch} (z of ${c.z_dim}, hidden layers of ${c.hidden_dim}); ` +
    `${M.count} ${M.manifest.dataset.name} test images.${prior} Everything runs in this page: nothing is fetched ` +
    "from another host.";
  fillWords();
  for (const panel of [morePanel, drawPanel, mapPanel, dimsPanel, walkPanel, quizPanel]) panel();
  window.exploreReadyMs = performance.now();  // for bench/explore_speed.py
  document.body.dataset.ready = "true";
} catch (error) {
  $("model-info").hidden = true;
  $("failure").hidden = false;
  $("failure").textContent = `The explorer could not start: ${error.message}. Is the explore command still running?`;
  throw error;
}
