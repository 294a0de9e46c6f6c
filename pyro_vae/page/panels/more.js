// More of this image: a test image, its reconstruction, and 100 draws of the guide around its code
// widened by the noise slider, decoded.
import { clampIndex, within } from "../dom.js";
import { MoreOfThis } from "../grid.js";
import { paint } from "../paint.js";

const FIRST_CLASS = 3;  // shown first where it has a test image: a 3, a Dress

export function mount(model, root) {
  const $ = within(root), { size } = model;
  const exemplars = model.manifest.dataset.exemplars;  // a test image of each class, -1 where none
  const usable = (label) => exemplars[label] >= 0 && exemplars[label] < model.count;
  const index = $("more-index"), buttons = $("more-classes");
  let seed = 1;
  const grid = new MoreOfThis(model, { canvas: $("more-grid"), slider: $("more-noise"), cells: 100, cols: 10, seed });

  function choose(i, label = null) {
    index.value = i;
    const x = model.binarized(i), code = model.encode(x);
    paint($("more-source"), [x], { size });
    paint($("more-mean"), [model.decode(code.zLoc)], { size });
    $("more-caption").textContent = `test image #${i} (labelled ${model.className(i)}) as the guide sees it`;
    for (const b of buttons.children) b.classList.toggle("chosen", Number(b.dataset.label) === label);
    grid.show(code);
  }

  exemplars.forEach((i, label) => {
    if (!usable(label)) return;
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = model.manifest.dataset.classes[label];
    b.dataset.label = label;
    b.title = `test image #${i}`;
    b.addEventListener("click", () => choose(i, label));
    buttons.append(b);
  });
  index.max = model.count - 1;
  index.addEventListener("change", () => choose(clampIndex(index, model.count)));
  $("more-redraw").addEventListener("click", () => grid.reseed(++seed));
  // FIRST_CLASS first, else the first class with a test image, else test image 0.
  const first = usable(FIRST_CLASS) ? FIRST_CLASS : exemplars.findIndex((_, label) => usable(label));
  if (first >= 0) choose(exemplars[first], first); else choose(0);
}
