// Small helpers for the panels' elements: finding them inside a panel, the test-image number boxes,
// the noise sliders and SVG elements.

// A lookup of elements by id inside one panel's root.
export function within(root) {
  return (id) => root.querySelector(`#${id}`);
}

// A test image's number from its box, clamped to 0..count-1 (and written back).
export function clampIndex(input, count) {
  const i = Math.min(count - 1, Math.max(0, Math.round(Number(input.value) || 0)));
  input.value = i;
  return i;
}

// A noise slider (a range input with an <output> beside it in one label) up to the manifest's
// max_noise, with the blog's two spreads written beside it; calls onChange(noise) as it moves.
// Returns a function that reads the noise.
export function noiseSlider(model, input, onChange) {
  const { max_noise: max, noise_marks: marks } = model.manifest.defaults;
  const output = input.parentElement.querySelector("output");
  input.max = max;
  const update = () => { output.textContent = Number(input.value).toFixed(2); onChange(Number(input.value)); };
  input.addEventListener("input", update);
  const written = document.createElement("span");
  written.className = "marks";
  written.textContent = `the blog's ${marks.join(", ")}`;
  input.parentElement.after(written);
  return () => Number(input.value);
}

const SVG = "http://www.w3.org/2000/svg";

export function svg(name, attributes = {}, text = null) {
  const el = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) el.setAttribute(key, value);
  if (text !== null) el.textContent = text;
  return el;
}
