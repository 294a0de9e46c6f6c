// "More of this", written once for the More and Draw panels: a grid of draws from the guide around one
// code, widened by the panel's noise slider (data.js's Model.moreOf), redrawn as the slider moves; or,
// for a labels model asked for a class, draws of z from p(z) = N(0, I) decoded with that class
// (Model.ofClass), where the noise slider does not apply.
import { paint } from "./paint.js";
import { noiseSlider } from "./dom.js";
import { normals } from "./random.js";

export class MoreOfThis {
  // canvas: the grid's; slider: its noise slider; cells drawn `cols` to a row from normals(seed);
  // onDraw(images), if given, sees every grid drawn.
  constructor(model, { canvas, slider, cells, cols, seed, onDraw = () => {} }) {
    Object.assign(this, { model, canvas, slider, cells, cols, onDraw, code: null, asked: null });
    this.noise = noiseSlider(model, slider, () => this.draw());
    this.reseed(seed);
  }

  // New draws from `seed` (the same seed, the same draws), shown if there is a code or a class.
  reseed(seed) {
    this.eps = normals(seed, this.cells * this.model.zDim);
    this.draw();
  }

  // code: the guide's { zLoc, zLogstd } (a labels model's with its class y) to draw around, or null for none.
  show(code) {
    Object.assign(this, { code, asked: null });
    this.draw();
  }

  // A labels model asked for class y: the prior's draws, decoded with y.
  ask(y) {
    Object.assign(this, { code: null, asked: y });
    this.draw();
  }

  draw() {
    this.slider.disabled = this.asked !== null;
    const { model } = this;
    const images = this.asked !== null ? model.ofClass(this.asked, this.eps)
      : this.code ? model.moreOf(this.code, this.noise(), this.eps) : null;
    if (!images) return;
    paint(this.canvas, images, { size: model.size, cols: this.cols });
    this.onDraw(images);
  }
}
