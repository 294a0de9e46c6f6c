// Real or machine? The blog's game: real test images among generated ones (a test image encoded, one
// draw of the widened guide, decoded); the player marks the machine's, then checks.
import { noiseSlider, svg, within } from "../dom.js";
import { flat, paint } from "../paint.js";
import { mulberry32, normals, shuffled } from "../random.js";

const CELLS = 36, COLS = 6;
const TRIES = 20;  // test images a cell may try before it settles for a flat one

// The answer's badge: a filled blue disc with a tick (right), a hollow vermillion square with a cross (wrong).
function badge(right) {
  const mark = svg("svg", { viewBox: "0 0 16 16", class: `badge ${right ? "right" : "wrong"}`, role: "img",
                            "aria-label": right ? "right" : "wrong" });
  mark.append(right ? svg("circle", { cx: 8, cy: 8, r: 8 }) : svg("rect", { x: 1, y: 1, width: 14, height: 14 }),
              svg("path", { d: right ? "M4 8.5 L7 11.5 L12.5 5" : "M4.5 4.5 L11.5 11.5 M11.5 4.5 L4.5 11.5" }));
  return mark;
}

export function mount(model, root) {
  const $ = within(root), { size, zDim, count } = model;
  const grid = $("quiz-grid"), score = $("quiz-score");
  // Black-and-white data (MNIST) plays the blog's game, thresholded; any other as grey levels. Either
  // way real and generated cells are drawn alike.
  const threshold = model.manifest.defaults.quiz_threshold;
  const drawn = threshold === null ? "grey" : "threshold";
  for (const el of root.querySelectorAll(".drawn")) el.hidden = el.dataset.drawn !== drawn;
  $("quiz-key-right").replaceChildren(badge(true), " (a blue disc)");
  $("quiz-key-wrong").replaceChildren(badge(false), " (a vermillion square)");
  let round = 0, answers = [], checked = false;
  const real = $("quiz-real");
  real.value = model.manifest.defaults.quiz_real_fraction;
  $("quiz-noise").value = model.manifest.defaults.quiz_noise;
  const showReal = () => { $("quiz-real-value").textContent = `${Math.round(100 * Number(real.value))}%`; };
  real.addEventListener("input", showReal);
  showReal();
  const noise = noiseSlider(model, $("quiz-noise"), () => {});
  $("quiz-noise-value").textContent = noise().toFixed(2);

  // Cell c's image: a test image, or one draw of the widened guide around one, decoded (a labels model's
  // at the class its classifier reads in that test image, as its code was encoded). A cell that
  // would come out flat (all black, say: a blank cell gives the game away) takes the next test image
  // and fresh draws.
  function cellImage(c, human, order, eps) {
    let image = null, source = 0;
    for (let attempt = 0; attempt < TRIES; attempt++) {
      source = order[(c + attempt * CELLS) % count];  // a distinct test image per cell, where there are enough
      const draws = attempt === 0 ? eps.subarray(c * zDim, (c + 1) * zDim)
        : normals(100_000 * round + 100 * c + attempt, zDim);
      image = human ? model.intensities(source) : model.moreOf(model.encode(model.binarized(source)), noise(), draws)[0];
      if (!flat(image, threshold)) break;
    }
    return { image, source };
  }

  function newRound() {
    const uniform = mulberry32(1000 + ++round);
    const order = shuffled(count, uniform);
    const places = shuffled(CELLS, uniform);
    const humans = new Set(places.slice(0, Math.round(CELLS * Number(real.value))));
    const eps = normals(round, CELLS * zDim);
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
      paint(canvas, [image], { size, threshold });
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
      answer.replaceChildren(badge(correct), human ? model.word("real") : "machine");
      if (correct) right++;
      if (marked && !human) found++;
      if (marked && human) wrongHumans++;
    }
    score.textContent = `Score: ${right} of ${answers.length} right. You found ${found} of the ${machines} machine ` +
      `${model.word("items")} and took ${wrongHumans} ${model.word("real")} ones for a machine's.`;
  }
  $("quiz-machine").textContent = machineTurn(model);
  $("quiz-check").addEventListener("click", check);
  $("quiz-new").addEventListener("click", newRound);
  newRound();
}

// How a machine did at the same game: the judge's C2ST of this checkpoint, from the manifest.
function machineTurn(model) {
  const judged = model.manifest.judge;
  if (!judged) {
    return "How does a machine do at this game? Run judge on this checkpoint, then open the page again: " +
      "a classifier trained to tell this model's images from real ones will be scored here.";
  }
  const percent = (x) => `${Math.round(100 * x)}%`;
  return `A machine's turn: a classifier trained on ${judged.samples / 2} of this model's ` +
    `${model.word("items")} (noise ${judged.noise}) and as many ${model.word("real")} ones told new ones apart ` +
    `${percent(judged.c2st_accuracy)} of the time (\u00b1${percent(judged.c2st_se)}; 50% is a coin toss), ` +
    `at epoch ${judged.epoch}.`;
}
