// Walk: a test image's code moved along sliders (the principal directions of the test codes, or the
// active dimensions with the most KL), and the straight line between two test images' codes. A labels
// model decodes a moved code at its image's class (the one it was encoded at), and the line between
// two codes, where no image is, at the class of the nearer end.
import { clampIndex, within } from "../dom.js";
import { paint } from "../paint.js";

const STEPS = 10;  // images in the strip from one test image to the other

export function mount(model, root) {
  const $ = within(root), { size, zDim } = model;
  const names = model.manifest.dataset.classes;
  const k = model.directions.length / zDim;
  const { activity, active } = model.manifest.latent;
  const activeDims = model.dimensionsByKl().filter((u) => active[u]);
  // A way to walk: unit directions (rows of zDim), the test codes' standard deviation along each, names.
  const ways = {
    principal: { directions: model.directions, sd: Array.from(model.variance, Math.sqrt),
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
    const z = Float32Array.from(base.zLoc);
    sliders.forEach((s, j) => {
      const step = Number(s.value) * way.sd[j];
      for (let d = 0; d < zDim; d++) z[d] += step * way.directions[j * zDim + d];
      s.nextElementSibling.textContent = `${Number(s.value) >= 0 ? "+" : ""}${Number(s.value).toFixed(1)} sd`;
    });
    paint($("walk-digit"), [model.decode(z, base.y)], { size });
  }
  function start() {
    const i = clampIndex(index, model.count);
    base = model.encode(model.binarized(i));
    $("walk-caption").textContent = `test image #${i} (labelled ${model.className(i)}): its code, moved along the ` +
      `sliders${model.labelled ? `, decoded as class ${names[base.y]}, the class read in it` : ""}`;
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
  for (const radio of root.querySelectorAll("input[name=walk-along]")) {
    radio.disabled = radio.value === "active" && activeDims.length === 0;
    radio.addEventListener("change", () => walkAlong(radio.value));
  }
  walkAlong("principal");
  $("walk-reset").addEventListener("click", () => { sliders.forEach((s) => { s.value = 0; }); decode(); });
  index.max = model.count - 1;
  const first = model.manifest.dataset.exemplars[0];
  index.value = first >= 0 && first < model.count ? first : 0;
  index.addEventListener("change", start);
  start();

  // Interpolation between two test images' codes.
  const from = $("walk-from"), to = $("walk-to"), t = $("walk-t");
  let ends;
  const along = (s) => {
    const z = new Float32Array(zDim);
    for (let d = 0; d < zDim; d++) z[d] = (1 - s) * ends[0].zLoc[d] + s * ends[1].zLoc[d];
    return model.decode(z, ends[s <= 0.5 ? 0 : 1].y);  // no image is between them: the nearer end's class
  };
  function line() {
    paint($("walk-line-digit"), [along(Number(t.value))], { size });
    $("walk-t-value").textContent = Number(t.value).toFixed(2);
  }
  function chooseEnds() {
    const [i, j] = [clampIndex(from, model.count), clampIndex(to, model.count)];
    ends = [i, j].map((n) => model.encode(model.binarized(n)));
    $("walk-strip-caption").textContent = `ten steps from test image #${i} (labelled ${model.className(i)}) to #${j} ` +
      `(labelled ${model.className(j)}), each decoded` + (model.labelled ? `: the first half as class ` +
      `${names[ends[0].y]} and the second as ${names[ends[1].y]}, the classes read in the two images` : "");
    paint($("walk-strip"), Array.from({ length: STEPS }, (_, s) => along(s / (STEPS - 1))), { size, cols: STEPS });
    line();
  }
  for (const input of [from, to]) { input.max = model.count - 1; input.addEventListener("change", chooseEnds); }
  const [a, b] = model.manifest.defaults.interpolate;
  from.value = Math.min(a, model.count - 1);
  to.value = Math.min(b, model.count - 1);
  t.addEventListener("input", line);
  chooseEnds();
}
