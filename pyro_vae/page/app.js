// The explorer: loads the model beside the page (data.js) and mounts each panel on its section.
// Each panel is a module of panels/ exporting one mount(model, root); they share the read-only
// model and the helpers of paint.js, random.js, dom.js and grid.js, never one another's state.
// Every sentence that names the images takes its words from the manifest, so a garment is never
// called a digit.
import { load } from "./data.js";
import * as more from "./panels/more.js";
import * as draw from "./panels/draw.js";
import * as map from "./panels/map.js";
import * as dims from "./panels/dims.js";
import * as walk from "./panels/walk.js";
import * as quiz from "./panels/quiz.js";

const PANELS = { more, draw, map, dims, walk, quiz };  // by the id of the section each is mounted on
const $ = (id) => document.getElementById(id);

// The header's line: which model, and the test set it runs on.
function describe(model) {
  const c = model.manifest.checkpoint, { latent, dataset } = model.manifest;
  // Every panel draws from the guide around real images or decodes chosen z; only a labels model's class
  // buttons sample p(z), which is N(0, I) for it, so a learned prior is named here once rather than drawn from.
  const prior = latent.prior === "vamp" ? ` Its prior is ${latent.about_prior}: the panels draw from the guide ` +
    "and decode chosen codes, never from the prior (generate --mode prior does)." : "";
  const family = model.labelled ? `; a labels model over ${model.classes} classes, trained with --labels` : "";
  return `Model ${c.path}, epoch ${c.epoch} (z of ${c.z_dim}, hidden layers of ${c.hidden_dim}${family}); ` +
    `${model.count} ${dataset.name} test images.${prior} Everything runs in this page: nothing is fetched ` +
    "from another host.";
}

try {
  const model = await load();
  $("model-info").textContent = describe(model);
  for (const el of document.querySelectorAll("[data-word]")) {
    el.textContent = model.word(el.dataset.word, { cap: el.hasAttribute("data-cap") });
  }
  for (const [id, panel] of Object.entries(PANELS)) panel.mount(model, $(id));
  window.exploreReadyMs = performance.now();  // for bench/explore_speed.py
  document.body.dataset.ready = "true";
} catch (error) {
  $("model-info").hidden = true;
  $("failure").hidden = false;
  $("failure").textContent = `The explorer could not start: ${error.message}. Is the explore command still running?`;
  throw error;
}
