// The exported model, loaded: manifest.json (shapes, settings, the data set's words and image size,
// each latent dimension's KL), weights.bin (the networks, run by nets.js), test.bin (test images, as
// seen and as the guide sees them, and labels) and map.bin (the views of the test codes). Panels
// read it and never change it. A labels model (manifest.checkpoint.classes > 0, Kingma et al.'s M2)
// loads as the VAE does: its codes carry the class the classifier reads, and decode takes a class.
import { networks, view } from "./nets.js";

const FORMAT = 2;  // of manifest.json, as pyro_vae/explore.py writes it

export class Model {
  // manifest: manifest.json's object; buffers: file name -> ArrayBuffer of every file it names.
  constructor(manifest, buffers) {
    const array = (name) => view(buffers[manifest.arrays[name].file], manifest.arrays[name]);
    this.manifest = manifest;
    this.vae = networks(manifest, buffers[Object.values(manifest.layers)[0].file]);
    this.zDim = this.vae.zDim;
    this.classes = manifest.checkpoint.classes ?? 0;  // 0: the VAE, which knows no classes
    this.labelled = this.classes > 0;
    this.size = manifest.dataset.image_size;  // images are size x size
    this.pixels = this.size * this.size;
    this.count = manifest.arrays.labels.shape[0];  // test images
    this.images = array("images");  // (count, pixels) uint8 intensities
    this.bits = array("bits");  // (count, pixels / 8) uint8, the binarized images, first pixel in the high bit
    this.labels = array("labels");
    this.mean = array("mean");  // (zDim) the test codes' mean
    this.directions = array("directions");  // (k, zDim) their principal directions
    this.variance = array("variance");  // (k) their variance along each
    this.planes = Object.fromEntries(Object.keys(manifest.map.planes).map(
      (name) => [name, { coords: array(`${name}_coords`), lift: array(`${name}_lift`) }]));
  }

  // Test image i as a person sees it: Float32Array(pixels) in [0, 1].
  intensities(i) {
    const out = new Float32Array(this.pixels);
    for (let p = 0; p < this.pixels; p++) out[p] = this.images[i * this.pixels + p] / 255;
    return out;
  }

  // Test image i as the guide sees it, binarized once as every command does: Float32Array(pixels) in {0, 1}.
  binarized(i) {
    const out = new Float32Array(this.pixels);
    const bytes = this.pixels / 8;
    for (let p = 0; p < this.pixels; p++) out[p] = (this.bits[i * bytes + (p >> 3)] >> (7 - (p & 7))) & 1;
    return out;
  }

  className(i) {
    return this.manifest.dataset.classes[this.labels[i]];
  }

  // What a labels model's classifier reads in an image, from its code: "read as 7, 93%".
  readAs(code) {
    return `read as ${this.manifest.dataset.classes[code.y]}, ${Math.round(100 * code.yProbs[code.y])}%`;
  }

  // The data set's words for its images (manifest.dataset.words: item, items, an_item, made, real).
  word(key, { cap = false } = {}) {
    const text = this.manifest.dataset.words[key];
    return cap ? text[0].toUpperCase() + text.slice(1) : text;
  }

  // The guide's code of an image: x (pixels) -> { zLoc, zLogstd }, Float32Array(zDim) each; a labels
  // model's code also has the class it was encoded at, y (q(y | x)'s most probable), and yProbs, q(y | x).
  encode(x) {
    return this.vae.encode(x);
  }

  // A labels model's q(y | x) and its most probable class: x (pixels) -> { y, yProbs }.
  classify(x) {
    return this.vae.classify(x);
  }

  // p(x | z, y)'s pixel probabilities: z (zDim), y a class (ignored by the VAE) -> Float32Array(pixels).
  decode(z, y = null) {
    return this.vae.xProbs(z, y);
  }

  // "More of this": draws from the guide widened by `noise`, decoded at the code's class (a labels
  // model's; none for the VAE). z = z_loc + exp(z_logstd + noise) eps for each zDim-long run of
  // `eps`: (draws * zDim) standard normals -> `draws` Float32Array(pixels).
  moreOf(code, noise, eps) {
    const images = [];
    for (let k = 0; k < eps.length / this.zDim; k++) {
      const z = new Float32Array(this.zDim);
      for (let d = 0; d < z.length; d++) z[d] = code.zLoc[d] + Math.exp(code.zLogstd[d] + noise) * eps[k * z.length + d];
      images.push(this.decode(z, code.y));
    }
    return images;
  }

  // A labels model asked for class y: z ~ p(z) = N(0, I), one for each zDim-long run of `eps`, decoded
  // with y (generate --mode label): (draws * zDim) standard normals -> `draws` Float32Array(pixels).
  ofClass(y, eps) {
    return this.moreOf(this.prior(y), 0, eps);
  }

  // p(z) = N(0, I) as a code of class y: z_loc 0, z_logstd 0.
  prior(y) {
    return { zLoc: new Float32Array(this.zDim), zLogstd: new Float32Array(this.zDim), y };
  }

  // One style written as every class: z (zDim) decoded with y = 0, 1, ... -> `classes` Float32Array(pixels).
  asEveryClass(z) {
    return Array.from({ length: this.classes }, (_, y) => this.decode(z, y));
  }

  // Every latent dimension's index, the most KL first.
  dimensionsByKl() {
    const { kl } = this.manifest.latent;
    return Array.from(kl.keys()).sort((a, b) => kl[b] - kl[a] || a - b);
  }
}

// The model beside the page, fetched from the server it came from.
export async function load() {
  const manifest = await (await fetch("manifest.json")).json();
  if (manifest.format !== FORMAT) throw new Error(`manifest format ${manifest.format}: re-export with this pyro-vae`);
  const names = [...new Set([...Object.values(manifest.layers), ...Object.values(manifest.arrays)].map((e) => e.file))];
  const buffers = {};
  await Promise.all(names.map(async (name) => {
    const answer = await fetch(name);
    if (!answer.ok) throw new Error(`${name}: ${answer.status}`);
    buffers[name] = await answer.arrayBuffer();
  }));
  return new Model(manifest, buffers);
}
