// More of this image: a test image, its reconstruction, and 100 draws of the guide around its code
// widened by the noise slider, decoded. The class buttons ask a labels model for that class (draws of
// z ~ N(0, I) decoded with it); the VAE knows no classes, so for it they pick a test image of the class.
import { clampIndex, within } from "../dom.js";
import { MoreOfThis } from "../grid.js";
import { paint } from "../paint.js";

const FIRST_CLASS = 3;  // shown first where it has a test image (or the model has the class): a 3, a Dress
const CELLS = 100;

// The mean of some images, pixel by pixel: Float32Array(pixels).
function average(images) {
  const out = new Float32Array(images[0].length);
  for (const image of images) for (let p = 0; p < out.length; p++) out[p] += image[p] / images.length;
  return out;
}

export function mount(model, root) {
  const $ = within(root), { size } = model;
  const names = model.manifest.dataset.classes;
  const exemplars = model.manifest.dataset.exemplars;  // a test image of each class, -1 where none
  const usable = (label) => model.labelled ? label < model.classes : exemplars[label] >= 0 && exemplars[label] < model.count;
  const index = $("more-index"), buttons = $("more-classes");
  const captions = { mean: $("more-mean").nextElementSibling.innerHTML, grid: $("more-grid-caption").textContent };
  let seed = 1, asked = null;
  // A class asked of a labels model: the middle image shows the average of the draws, redrawn with them.
  const grid = new MoreOfThis(model, { canvas: $("more-grid"), slider: $("more-noise"), cells: CELLS, cols: 10, seed,
    onDraw: (images) => { if (asked !== null) paint($("more-mean"), [average(images)], { size }); } });
  const chosen = (label) => { for (const b of buttons.children) b.classList.toggle("chosen", Number(b.dataset.label) === label); };

  function choose(i, label = null) {
    asked = null;
    index.value = i;
    const x = model.binarized(i), code = model.encode(x);
    paint($("more-source"), [x], { size });
    paint($("more-mean"), [model.decode(code.zLoc, code.y)], { size });
    $("more-caption").textContent = `test image #${i} (labelled ${model.className(i)}` +
      (model.labelled ? `; ${model.readAs(code)}` : "") + ") as the guide sees it";
    $("more-mean").nextElementSibling.innerHTML = captions.mean;
    $("more-grid-caption").textContent = captions.grid + (model.labelled ? `, each at the class the classifier reads (${names[code.y]})` : "");
    chosen(label);
    grid.show(code);
  }
  // A labels model asked for class y: p(z)'s centre decoded with y, and draws of z ~ N(0, I) decoded with y.
  function ask(y) {
    asked = y;
    paint($("more-source"), [model.decode(model.prior(y).zLoc, y)], { size });
    $("more-caption").textContent = `the centre of p(z), z = 0, decoded as class ${names[y]}`;
    $("more-mean").nextElementSibling.textContent = `the average of the ${CELLS} draws`;
    $("more-grid-caption").textContent = `${CELLS} draws of z from p(z) = N(0, I), each decoded as class ${names[y]} ` +
      "(pixel probabilities; the noise slider widens the guide around a test image, not p(z))";
    chosen(y);
    grid.ask(y);
  }

  $("more-buttons-note").textContent = model.labelled
    ? `The buttons ask the model for a class: it was trained with labels, so it draws a style z from N(0, I) and ` +
      `decodes it with the class fixed. A test image's number shows more of that ${model.word("item")} instead.`
    : `The buttons pick a test image of each class: this model was trained without labels and knows no classes ` +
      "(a model trained with --labels is asked for the class itself).";
  names.forEach((name, label) => {
    if (!usable(label)) return;
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.dataset.label = label;
    b.title = model.labelled ? `ask the model for class ${name}` : `test image #${exemplars[label]}`;
    b.addEventListener("click", () => (model.labelled ? ask(label) : choose(exemplars[label], label)));
    buttons.append(b);
  });
  index.max = model.count - 1;
  index.addEventListener("change", () => choose(clampIndex(index, model.count)));
  $("more-redraw").addEventListener("click", () => grid.reseed(++seed));
  // FIRST_CLASS first, else the first usable class, else test image 0.
  const first = usable(FIRST_CLASS) ? FIRST_CLASS : names.findIndex((_, label) => usable(label));
  if (first < 0) choose(0);
  else if (model.labelled) ask(first);
  else choose(exemplars[first], first);
}
