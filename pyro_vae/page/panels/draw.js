// Draw: a stroke on a pad, made into an image as MNIST's were, and what the model makes of it as you
// draw: the image the guide sees, its reconstruction, and more of this; for a labels model, the class
// its classifier reads and the drawing's style z (q(z | x, y) at that class) decoded as every class.
import { within } from "../dom.js";
import { MoreOfThis } from "../grid.js";
import { paint } from "../paint.js";

const PEN_WIDTH = 22;  // on the 280x280 pad: about a pen's stroke in a 28x28 image
const [BOX, FRAME] = [20, 28];  // MNIST's 20x20 box for the stroke in its 28x28 image, scaled to the manifest's size

export function mount(model, root) {
  const $ = within(root), { size, pixels } = model;
  const pad = $("draw-pad"), pen = pad.getContext("2d");
  const small = document.createElement("canvas");
  small.width = small.height = size;
  const grid = new MoreOfThis(model, { canvas: $("draw-more"), slider: $("draw-noise"), cells: 36, cols: 6, seed: 7 });
  let last = null, pending = false;
  const style = $("draw-style");
  if (model.labelled) {
    style.style.width = `${70 * model.classes}px`;  // 70 pixels a class, as the strip's CSS gives ten
  } else {  // the VAE has one z and no class to write it as
    const command = Object.assign(document.createElement("code"), { textContent: "pyro-vae train --labels 100" });
    $("draw-style-about").replaceChildren("Writing a drawing's style as every class needs a model trained with " +
      "labels, which learns a class y beside the style z: e.g. ", command, ".");
    $("draw-style-figure").hidden = true;
  }

  function clear() {
    pen.fillStyle = "black";
    pen.fillRect(0, 0, pad.width, pad.height);
    grid.show(null);
    $("draw-style-caption").textContent = "draw to see";
    for (const id of ["draw-input", "draw-recon", "draw-more", "draw-style"]) {
      const c = $(id);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
    }
  }

  // As MNIST was made: the stroke's bounding box scaled into the box, then centred by its mass.
  // Returns Float32Array(pixels) in {0, 1}, or null before the first stroke.
  function input() {
    const { width, height } = pad;
    const rgba = pen.getImageData(0, 0, width, height).data;
    let x0 = width, y0 = height, x1 = -1, y1 = -1;
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) {
      if (rgba[(y * width + x) * 4] > 0) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    }
    if (x1 < 0) return null;
    const side = Math.max(x1 - x0 + 1, y1 - y0 + 1), box = size * BOX / FRAME;
    const boxW = box * (x1 - x0 + 1) / side, boxH = box * (y1 - y0 + 1) / side;
    const s = small.getContext("2d", { willReadFrequently: true });
    s.fillStyle = "black";
    s.fillRect(0, 0, size, size);
    s.imageSmoothingEnabled = true;
    s.imageSmoothingQuality = "high";
    s.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (size - boxW) / 2, (size - boxH) / 2, boxW, boxH);
    const grey = s.getImageData(0, 0, size, size).data;
    let mass = 0, mx = 0, my = 0;
    for (let p = 0; p < pixels; p++) { const v = grey[p * 4] / 255; mass += v; mx += v * (p % size); my += v * Math.floor(p / size); }
    const dx = Math.round((size - 1) / 2 - mx / mass), dy = Math.round((size - 1) / 2 - my / mass);
    const x = new Float32Array(pixels);
    for (let y = 0; y < size; y++) for (let c = 0; c < size; c++) {
      const from = (y - dy) * size + (c - dx);
      if (y - dy >= 0 && y - dy < size && c - dx >= 0 && c - dx < size) x[y * size + c] = grey[from * 4] >= 128 ? 1 : 0;
    }
    return x;
  }

  function update() {
    pending = false;
    const x = input();
    if (!x) return;
    const code = model.encode(x);
    paint($("draw-input"), [x], { size });
    paint($("draw-recon"), [model.decode(code.zLoc, code.y)], { size });
    grid.show(code);
    if (model.labelled) {
      paint(style, model.asEveryClass(code.zLoc), { size, cols: model.classes });
      $("draw-style-caption").textContent = `${model.readAs(code)}: its style decoded as ` +
        `${model.manifest.dataset.classes.join(", ")}`;
    }
  }
  function at(event) {
    const box = pad.getBoundingClientRect();
    return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
  }
  function stroke(to) {
    pen.strokeStyle = "white";
    pen.lineWidth = PEN_WIDTH;
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
