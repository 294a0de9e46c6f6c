// Map: every test image's code (the guide's mean) on a plane through the latent space, coloured by
// class. Hovering shows a point's image; a click or a drag decodes that point of the plane.
import { within } from "../dom.js";
import { paint } from "../paint.js";

// Matplotlib's tab10, the colours of results/latent_map.png.
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
const NEAR = 12;  // pixels: how close the pointer must be to a point to show its image

export function mount(model, root) {
  const $ = within(root), { size, count } = model;
  const canvas = $("map-canvas");
  const context = canvas.getContext("2d");
  const points = document.createElement("canvas");
  points.width = canvas.width;
  points.height = canvas.height;
  const screen = new Float32Array(2 * count);
  let plane, toPlane, hover = null, clicked = null, dragging = false;

  // The view of one plane: the middle 99.8% of the points on each axis, with a margin; all points drawn once.
  function show(name) {
    plane = model.planes[name];
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
      p.fillStyle = COLOURS[model.labels[i] % COLOURS.length];
      p.fillRect(sx - 1, sy - 1, 2.5, 2.5);
    }
    const share = model.manifest.map.variance_share;
    $("map-axes").textContent = name === "pca"
      ? `across: PCA direction 1 (${(100 * share[0]).toFixed(0)}% of the codes' variance); up: direction 2 ` +
        `(${(100 * (share[1] ?? 0)).toFixed(0)}%). The classes overlap: the model spreads them over all ` +
        `${model.zDim} dimensions.`
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
  function nearest(px, py, within = NEAR) {
    let best = null, bestD = within * within;
    for (let i = 0; i < count; i++) {
      const d = (screen[2 * i] - px) ** 2 + (screen[2 * i + 1] - py) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }
  // A point (a, b) of the plane is a latent vector: mean + a lift[0] + b lift[1], the average code there.
  // No image is there, so a labels model decodes it with the class its classifier reads in the test
  // image whose code is nearest on the screen (whose own code was encoded at that class).
  function decode(px, py) {
    const [a, b] = toPlane(px, py);
    const z = new Float32Array(model.zDim);
    for (let d = 0; d < z.length; d++) z[d] = model.mean[d] + a * plane.lift[d] + b * plane.lift[z.length + d];
    clicked = [px, py];
    let as = "", y = null;
    if (model.labelled) {
      const i = nearest(px, py, Infinity);
      y = model.classify(model.binarized(i)).y;
      as = `, as class ${model.manifest.dataset.classes[y]} (read in test image #${i}, the nearest point)`;
    }
    paint($("map-decoded"), [model.decode(z, y)], { size });
    $("map-decoded-caption").textContent = `decoded at (${a.toFixed(2)}, ${b.toFixed(2)}) of the plane${as}`;
    redraw();
  }
  canvas.addEventListener("pointermove", (event) => {
    const [px, py] = pixel(event);
    if (dragging) { decode(px, py); return; }
    hover = nearest(px, py);
    if (hover !== null) {
      paint($("map-hover"), [model.intensities(hover)], { size });
      $("map-hover-caption").textContent = `test image #${hover}, labelled ${model.className(hover)}`;
    }
    redraw();
  });
  canvas.addEventListener("pointerdown", (event) => { dragging = true; canvas.setPointerCapture(event.pointerId); decode(...pixel(event)); });
  for (const end of ["pointerup", "pointercancel"]) canvas.addEventListener(end, () => { dragging = false; });

  const choice = $("map-plane");
  Object.entries(model.manifest.map.planes).forEach(([name, label], k) => {
    const option = document.createElement("label");
    const radio = Object.assign(document.createElement("input"), { type: "radio", name: "map-plane", value: name, checked: k === 0 });
    radio.addEventListener("change", () => show(name));
    option.append(radio, ` ${label}`);
    choice.append(option);
  });
  const legend = $("map-legend");
  model.manifest.dataset.classes.forEach((name, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = COLOURS[k % COLOURS.length];
    item.append(swatch, name);
    legend.append(item);
  });
  const blank = new Float32Array(model.pixels);
  paint($("map-hover"), [blank], { size });
  paint($("map-decoded"), [blank], { size });
  show(Object.keys(model.planes)[0]);
}
