// Latent dimensions: each dimension's KL and whether it is active, as computed at export
// (manifest.latent), drawn as bars sorted by KL.
import { svg, within } from "../dom.js";

// The plot's box and margins, in SVG units.
const [WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM] = [880, 240, 46, 8, 30, 34];

export function mount(model, root) {
  const $ = within(root);
  const { kl, activity, active, threshold, prior, about_prior: aboutPrior } = model.manifest.latent;
  const zDim = kl.length, order = model.dimensionsByKl();
  const count = active.filter(Boolean).length;
  const total = kl.reduce((a, b) => a + b, 0);
  $("dims-threshold").textContent = String(threshold);
  const vamp = prior === "vamp";
  if (vamp) {  // a VampPrior does not factorise, so each dimension is scored against its own marginal
    $("dims-kl").textContent = `its KL from the prior's marginal along it (the prior is ${aboutPrior}), averaged ` +
      "over the test images, in nats, by Monte Carlo (these do not add up to the ELBO's KL term)";
  }
  $("dims-count").textContent = `${count} of ${zDim} dimensions active` +
    (vamp ? "" : `; their KL adds up to ${total.toFixed(1)} nats per image`);
  const step = Math.min(40, (WIDTH - LEFT - RIGHT) / zDim), bar = Math.max(1, step * 0.72);
  const most = Math.max(...kl, 1e-6);
  const tick = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50].find((t) => most / t <= 5) ?? 100;
  const y = (v) => TOP + (HEIGHT - TOP - BOTTOM) * (1 - Math.max(0, v) / most);
  const plot = $("dims-bars");
  plot.replaceChildren();
  plot.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  for (let v = 0; v <= most + 1e-9; v += tick) {
    plot.append(svg("line", { x1: LEFT - 4, x2: WIDTH - RIGHT, y1: y(v), y2: y(v) }),
                svg("text", { x: LEFT - 8, y: y(v) + 4, "text-anchor": "end" }, String(Number(v.toFixed(2)))));
  }
  plot.append(svg("text", { x: 4, y: 14 }, "KL, nats"));
  const labelEvery = Math.ceil(18 / step);  // dimension numbers at least 18 pixels apart
  order.forEach((u, rank) => {
    const x = LEFT + rank * step + (step - bar) / 2;
    const h = Math.max(2, y(0) - y(kl[u]));  // an empty bar keeps a visible outline
    const rect = svg("rect", { x, y: y(0) - h, width: bar, height: h, class: active[u] ? "active" : "inactive",
                               "data-dimension": u });
    rect.append(svg("title", {}, `z[${u}]: KL ${kl[u].toFixed(3)} nats; variance of the guide's mean over the ` +
      `test images ${activity[u].toFixed(3)}: ${active[u] ? "active" : "inactive"}`));
    plot.append(rect);
    if (rank % labelEvery === 0) {
      plot.append(svg("text", { x: x + bar / 2, y: HEIGHT - BOTTOM + 15, "text-anchor": "middle" }, String(u)));
    }
  });
  plot.append(svg("text", { x: LEFT, y: HEIGHT - 4 }, "dimension u of z, sorted by KL"));
  // The legend, in shapes as well as colours: filled for active, hollow for inactive.
  const legend = [[`active (variance > ${threshold})`, "active"], ["inactive", "inactive"]];
  let at = WIDTH - RIGHT - 330;
  for (const [label, kind] of legend) {
    plot.append(svg("rect", { x: at, y: 6, width: 14, height: 14, class: kind }),
                svg("text", { x: at + 20, y: 18 }, label));
    at += 200;
  }
}
