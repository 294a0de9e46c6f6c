// The exported model, loaded: manifest.json (shapes, settings, the data set's words and image size,
// each latent dimension's KL), weights.bin (the networks, run by nets.js), test.bin (test images, as
// seen and as the guide sees them, and labels) and map.bin (the views of the test codes). Panels
// read it and never change it.
import { VAE, view } from "./nets.js";

const FORMAT = 2;  // of manifest.json, as pyro_vae/explore.py writes it

export class Model {
  // manifest: manifest.json's object; buffers: file name -> ArrayBuffer of every file it names.
  constructor(manifest, buffers) {
    const array = (name) => view(buffers[manifest.arrays[name].file], manifest.arrays[name]);
    this.manifest = manifest;
    this.vae = new VAE(manifest, buffers[Object.values(manifest.layers)[0].file]);
    this.zDim = this.vae.zDim;
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

  // The data set's words for its images (manifest.dataset.words: item, items, an_item, made, real).
  word(key, { cap = false } = {}) {
    const text = this.manifest.dataset.words[key];
    return cap ? text[0].toUpperCase() + text.slice(1) : text;
  }

  // The guide's code of an image: x (pixels) -> { zLoc, zLogstd }, Float32Array(zDim) each.
  encode(x) {
    return this.vae.encoder.forward(x);
  }

  // p(x | z)'s pixel probabilities: z (zDim) -> Float32Array(pixels).
  decode(z) {
    return this.vae.xProbs(z);
  }

  // "More of this": draws from the guide widened by `noise`, decoded. z = z_loc + exp(z_logstd + noise) eps
  // for each zDim-long run of `eps`: (draws * zDim) standard normals -> `draws` Float32Array(pixels).
  moreOf(code, noise, eps) {
    const images = [];
    for (let k = 0; k < eps.length / this.zDim; k++) {
      const z = new Float32Array(this.zDim);
      for (let d = 0; d < z.length; d++) z[d] = code.zLoc[d] + Math.exp(code.zLogstd[d] + noise) * eps[k * z.length + d];
      images.push(this.decode(z));
    }
    return images;
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
