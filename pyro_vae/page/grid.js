// "More of this", written once for the More and Draw panels: a grid of draws from the guide around one
// code, widened by the panel's noise slider (data.js's Model.moreOf), redrawn as the slider moves.
import { paint } from "./paint.js";
import { noiseSlider } from "./dom.js";
import { normals } from "./random.js";

export class MoreOfThis {
  // canvas: the grid's; slider: its noise slider; cells drawn `cols` to a row from normals(seed).
  constructor(model, { canvas, slider, cells, cols, seed }) {
    Object.assign(this, { model, canvas, cells, cols, code: null });
    this.noise = noiseSlider(model, slider, () => this.draw());
    this.reseed(seed);
  }

  // New draws from `seed` (the same seed, the same draws), shown if there is a code.
  reseed(seed) {
    this.eps = normals(seed, this.cells * this.model.zDim);
    this.draw();
  }

  // code: the guide's { zLoc, zLogstd } to draw around, or null for none.
  show(code) {
    this.code = code;
    this.draw();
  }

  draw() {
    if (!this.code) return;
    paint(this.canvas, this.model.moreOf(this.code, this.noise(), this.eps), { size: this.model.size, cols: this.cols });
  }
}
