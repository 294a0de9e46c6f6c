// The explorer's panels. Everything is computed here, from the files beside this one: manifest.json,
// weights.bin (the networks), test.bin (test images, as seen and as the guide sees them, and labels)
// and map.bin (the PCA of the test codes). Each panel draws digits with the one helper `paint`.
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
        const v = image[y * SIZE + x];
        const grey = threshold === null ? Math.round(Math.min(1, Math.max(0, v)) * 255) : (v >= threshold ? 255 : 0);
        const at = ((top + y) * canvas.width + left + x) * 4;
        rgba[at] = rgba[at + 1] = rgba[at + 2] = grey;
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
  if (manifest.format !== 1) throw new Error(`manifest format ${manifest.format}: re-export with this pyro-vae`);
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
  // The seed's two spreads, written under the slider's ticks.
  const marks = document.createElement("span");
  marks.className = "marks";
  marks.textContent = `seed: ${M.manifest.defaults.noise_marks.join(", ")}`;
  input.parentElement.after(marks);
  return () => Number(input.value);
}

// ---------------------------------------------------------------------------------------------
// More of this digit

function morePanel() {
  const GRID = 100;
  let code, seed = 1;
  let eps = normals(seed, GRID * M.vae.zDim);
  const index = $("more-index");
  const buttons = $("more-digits");
  const noise = noiseSlider("more-noise", () => drawGrid());

  function drawGrid() {
    paint($("more-grid"), widened(code, noise(), eps, GRID).map((z) => M.vae.xProbs(z)), { cols: 10 });
  }
  function choose(i, digit = null) {
    index.value = i;
    code = M.vae.encoder.forward(binarized(i));
    paint($("more-source"), [binarized(i)]);
    paint($("more-mean"), [M.vae.xProbs(code.zLoc)]);
    $("more-caption").textContent = `test image #${i} (a ${className(i)}) as the guide sees it`;
    for (const b of buttons.children) b.classList.toggle("chosen", Number(b.dataset.digit) === digit);
    drawGrid();
  }
  M.manifest.dataset.exemplars.forEach((i, digit) => {
    if (i >= M.count) return;
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = M.manifest.dataset.classes[digit];
    b.dataset.digit = digit;
    b.title = `the seed's exemplar: test image #${i}`;
    b.addEventListener("click", () => choose(i, digit));
    buttons.append(b);
  });
  index.max = M.count - 1;
  index.addEventListener("change", () => choose(clampIndex(index)));
  $("more-redraw").addEventListener("click", () => { eps = normals(++seed, GRID * M.vae.zDim); drawGrid(); });
  const first = M.manifest.dataset.exemplars[3] < M.count ? 3 : 0;
  choose(M.manifest.dataset.exemplars[first] ?? 0, first);
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
      $("map-hover-caption").textContent = `test image #${hover}, a ${className(hover)}`;
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
// Walk

function walkPanel() {
  const zDim = M.vae.zDim, k = M.directions.length / zDim;
  const sliders = [];
  let base;
  const index = $("walk-index");

  function decode() {
    const z = Float32Array.from(base);
    sliders.forEach((s, j) => {
      const step = Number(s.value) * Math.sqrt(M.variance[j]);
      for (let d = 0; d < zDim; d++) z[d] += step * M.directions[j * zDim + d];
      s.nextElementSibling.textContent = `${Number(s.value) >= 0 ? "+" : ""}${Number(s.value).toFixed(1)} sd`;
    });
    paint($("walk-digit"), [M.vae.xProbs(z)]);
  }
  function start() {
    const i = clampIndex(index);
    base = M.vae.encoder.forward(binarized(i)).zLoc;
    $("walk-caption").textContent = `test image #${i} (a ${className(i)}): its code, moved along the directions`;
    decode();
  }
  for (let j = 0; j < k; j++) {
    const label = document.createElement("label");
    label.className = "slider";
    const s = Object.assign(document.createElement("input"), { type: "range", min: -3, max: 3, step: 0.01, value: 0 });
    s.id = `walk-direction-${j}`;
    s.addEventListener("input", decode);
    label.append(`direction ${j + 1} `, s, document.createElement("output"));
    sliders.push(s);
    $("walk-sliders").append(label);
  }
  $("walk-reset").addEventListener("click", () => { sliders.forEach((s) => { s.value = 0; }); decode(); });
  index.max = M.count - 1;
  index.value = M.manifest.dataset.exemplars[0] < M.count ? M.manifest.dataset.exemplars[0] : 0;
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
    $("walk-strip-caption").textContent = `ten steps from test image #${i} (a ${className(i)}) to #${j} ` +
      `(a ${className(j)}), each decoded`;
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
// Human or machine?

function quizPanel() {
  const CELLS = 36, COLS = 6;
  const grid = $("quiz-grid"), score = $("quiz-score");
  let round = 0, answers = [], checked = false;
  const real = $("quiz-real");
  real.value = M.manifest.defaults.quiz_real_fraction;
  $("quiz-noise").value = M.manifest.defaults.quiz_noise;
  const showReal = () => { $("quiz-real-value").textContent = `${Math.round(100 * Number(real.value))}%`; };
  real.addEventListener("input", showReal);
  showReal();
  const noise = noiseSlider("quiz-noise", () => {});
  $("quiz-noise-value").textContent = noise().toFixed(2);

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
      const source = order[c % M.count];  // a distinct test image per cell, where there are enough
      const human = humans.has(c);
      const image = human ? intensities(source)
        : M.vae.xProbs(widened(M.vae.encoder.forward(binarized(source)), noise(), eps.subarray(c * M.vae.zDim), 1)[0]);
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "quiz-cell";
      cell.setAttribute("aria-pressed", "false");
      const canvas = document.createElement("canvas");
      paint(canvas, [image], { threshold: 0.5 });
      cell.append(canvas);
      cell.addEventListener("click", () => {
        if (checked) return;
        cell.setAttribute("aria-pressed", String(cell.getAttribute("aria-pressed") !== "true"));
      });
      grid.append(cell);
      answers.push({ cell, human, source });
    }
    grid.style.gridTemplateColumns = `repeat(${COLS}, auto)`;
  }
  function check() {
    checked = true;
    let right = 0, found = 0, wrongHumans = 0;
    const machines = answers.filter((a) => !a.human).length;
    for (const { cell, human } of answers) {
      const marked = cell.getAttribute("aria-pressed") === "true";
      cell.classList.add(human ? "human" : "machine");
      if (marked !== human) right++; else cell.classList.add("wrong");
      if (marked && !human) found++;
      if (marked && human) wrongHumans++;
    }
    score.textContent = `Score: ${right} of ${answers.length} right. You found ${found} of the ${machines} machine ` +
      `digits and took ${wrongHumans} human ones for a machine's.`;
  }
  $("quiz-check").addEventListener("click", check);
  $("quiz-new").addEventListener("click", newRound);
  newRound();
}

// ---------------------------------------------------------------------------------------------

try {
  M = await load();
  const c = M.manifest.checkpoint;
  $("model-info").textContent = `Model ${c.path}, epoch ${c.epoch} (z of ${c.z_dim}, hidden layers of ${c.hidden_dim}); ` +
    `${M.count} ${M.manifest.dataset.name} test images. Everything runs in this page: nothing is fetched from another host.`;
  // The panels speak of digits; on another data set (Fashion-MNIST, a user's own) the title says "class".
  if (M.manifest.dataset.name !== "MNIST") {
    for (const el of document.querySelectorAll(".noun")) el.textContent = el.textContent.replace("digit", "class");
  }
  for (const panel of [morePanel, drawPanel, mapPanel, walkPanel, quizPanel]) panel();
  window.exploreReadyMs = performance.now();  // for bench/explore_speed.py
  document.body.dataset.ready = "true";
} catch (error) {
  $("failure").hidden = false;
  $("failure").textContent = `The explorer could not start: ${error.message}. Is the explore command still running?`;
  throw error;
}
