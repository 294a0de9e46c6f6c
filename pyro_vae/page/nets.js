// The VAE's two networks and the labels model's three (Kingma et al.'s M2) over Float32Arrays,
// mirroring pyro_vae/model.py and pyro_vae/m2.py line for line.
// Weights come from weights.bin as torch stores them, a layer's weight (out, in) row-major; each
// layer keeps a transposed copy so that y = W x + b can add up x_i times column i of W, skipping
// the inputs that are 0: most pixels of a digit, and about 70% of the units after a ReLU. That
// halves the decoder's work (a 10x10 grid in the page's time budget) and more for the encoder.
// Sums run in float64 and are rounded to float32 per layer, as torch's fp32 layers round.
// tests/test_explore.py holds these outputs against VAE.x_probs and VAE.encoder, and M2's networks.

// One array of an exported file, as manifest.json describes it (little-endian, 4-byte aligned).
export function view(buffer, entry) {
  const count = entry.shape.reduce((a, b) => a * b, 1);
  const Kind = { float32: Float32Array, uint8: Uint8Array }[entry.dtype];
  if (!Kind) throw new Error(`unknown dtype ${entry.dtype}`);
  return new Kind(buffer, entry.offset, count);
}

// nn.Linear: x (in) -> y (out) = W x + b, W: (out, in).
export class Linear {
  constructor(layers, name) {
    const entry = layers.entries[`${name}.weight`];
    [this.outDim, this.inDim] = entry.shape;
    const weight = view(layers.buffer, entry);
    this.columns = new Float32Array(weight.length);  // W transposed: (in, out)
    for (let o = 0; o < this.outDim; o++) {
      for (let i = 0; i < this.inDim; i++) this.columns[i * this.outDim + o] = weight[o * this.inDim + i];
    }
    this.bias = view(layers.buffer, layers.entries[`${name}.bias`]);
    this.sum = new Float64Array(this.outDim);
  }

  forward(x, y = new Float32Array(this.outDim)) {
    const { columns, bias, inDim, outDim, sum } = this;
    sum.fill(0);
    for (let i = 0; i < inDim; i++) {
      const v = x[i];
      if (v === 0) continue;
      const column = i * outDim;
      for (let o = 0; o < outDim; o++) sum[o] += v * columns[column + o];
    }
    for (let o = 0; o < outDim; o++) y[o] = sum[o] + bias[o];
    return y;
  }
}

export function relu(h) {
  for (let i = 0; i < h.length; i++) if (h[i] < 0) h[i] = 0;
  return h;
}

export function sigmoid(v) {
  for (let i = 0; i < v.length; i++) v[i] = 1 / (1 + Math.exp(-v[i]));
  return v;
}

// The seed's network shape (model.two_hidden_layers): in -> hidden -> hidden (ReLU) -> out, the VAE's
// decoder and the labels model's classifier.
export class TwoHiddenLayers {
  constructor(layers, name) {
    this.net = [0, 2, 4].map((k) => new Linear(layers, `${name}.${k}`));
  }

  forward(v) {
    const h = relu(this.net[1].forward(relu(this.net[0].forward(v))));
    return this.net[2].forward(h);
  }
}

// q(z | x)'s network: 784 -> hidden -> hidden (ReLU) -> (z_loc, z_logstd).
export class Encoder {
  constructor(layers) {
    this.body = [new Linear(layers, "encoder.body.0"), new Linear(layers, "encoder.body.2")];
    this.loc = new Linear(layers, "encoder.loc");
    this.logstd = new Linear(layers, "encoder.logstd");
  }

  // x: Float32Array(784) -> { zLoc, zLogstd }: Float32Array(z_dim) each.
  forward(x) {
    const h = relu(this.body[1].forward(relu(this.body[0].forward(x))));
    return { zLoc: this.loc.forward(h), zLogstd: this.logstd.forward(h) };
  }
}

// p(x | z)'s network: z -> hidden -> hidden (ReLU) -> 784 Bernoulli logits.
export class Decoder {
  constructor(layers) {
    this.net = new TwoHiddenLayers(layers, "decoder.net");
  }

  // z: Float32Array(z_dim) -> x_logits: Float32Array(784).
  forward(z) {
    return this.net.forward(z);
  }
}

export class VAE {
  // manifest: manifest.json's object; buffer: weights.bin's ArrayBuffer.
  constructor(manifest, buffer) {
    const layers = { entries: manifest.layers, buffer };
    this.zDim = manifest.checkpoint.z_dim;
    this.encoder = new Encoder(layers);
    this.decoder = new Decoder(layers);
  }

  // q(z | x)'s parameters: x (784) -> { zLoc, zLogstd }.
  encode(x) {
    return this.encoder.forward(x);
  }

  // p(x | z)'s pixel probabilities: z (z_dim) -> Float32Array(784) in [0, 1]; the VAE knows no class y.
  xProbs(z, y = null) {
    return sigmoid(this.decoder.forward(z));
  }
}

// m2._ClassInput: a first layer over (v, one_hot(y)), W_v v + b + W_y[:, y]: the nn.Linear `value`
// plus row y of the nn.Embedding `label` (classes, hidden), added in float32 as torch adds them.
export class ClassInput {
  constructor(layers, name) {
    this.value = new Linear(layers, `${name}.value`);
    this.label = view(layers.buffer, layers.entries[`${name}.label.weight`]);
    this.classes = layers.entries[`${name}.label.weight`].shape[0];
  }

  // v: Float32Array(in), y: a class number -> Float32Array(hidden).
  forward(v, y) {
    if (!(Number.isInteger(y) && y >= 0 && y < this.classes)) throw new Error(`class ${y} is not one of 0..${this.classes - 1}`);
    const h = this.value.forward(v), n = h.length;
    for (let o = 0; o < n; o++) h[o] += this.label[y * n + o];
    return h;
  }
}

// q(z | x, y)'s network: (784 + classes) -> hidden -> hidden (ReLU) -> (z_loc, z_logstd).
export class ClassEncoder {
  constructor(layers) {
    this.first = new ClassInput(layers, "encoder.first");
    this.body = new Linear(layers, "encoder.body.1");
    this.loc = new Linear(layers, "encoder.loc");
    this.logstd = new Linear(layers, "encoder.logstd");
  }

  // x: Float32Array(784), y: a class -> { zLoc, zLogstd }: Float32Array(z_dim) each.
  forward(x, y) {
    const h = relu(this.body.forward(relu(this.first.forward(x, y))));
    return { zLoc: this.loc.forward(h), zLogstd: this.logstd.forward(h) };
  }
}

// p(x | z, y)'s network: (z_dim + classes) -> hidden -> hidden (ReLU) -> 784 Bernoulli logits.
export class ClassDecoder {
  constructor(layers) {
    this.first = new ClassInput(layers, "decoder.first");
    this.body = [new Linear(layers, "decoder.body.1"), new Linear(layers, "decoder.body.3")];
  }

  // z: Float32Array(z_dim), y: a class -> x_logits: Float32Array(784).
  forward(z, y) {
    return this.body[1].forward(relu(this.body[0].forward(relu(this.first.forward(z, y)))));
  }
}

// The labels model: q(y | x) (the classifier), q(z | x, y) and p(x | z, y).
export class M2 {
  constructor(manifest, buffer) {
    const layers = { entries: manifest.layers, buffer };
    this.zDim = manifest.checkpoint.z_dim;
    this.classes = manifest.checkpoint.classes;
    this.classifier = new TwoHiddenLayers(layers, "classifier.net");
    this.encoder = new ClassEncoder(layers);
    this.decoder = new ClassDecoder(layers);
  }

  // q(y | x) and its most probable class: x (784) -> { y, yProbs: Float32Array(classes) }, y the
  // first of the largest logits, as torch's argmax picks it.
  classify(x) {
    const yProbs = this.classifier.forward(x);
    const top = Math.max(...yProbs), y = yProbs.indexOf(top);
    let total = 0;
    for (let c = 0; c < yProbs.length; c++) total += (yProbs[c] = Math.exp(yProbs[c] - top));
    for (let c = 0; c < yProbs.length; c++) yProbs[c] /= total;
    return { y, yProbs };
  }

  // As M2.encode: q(z | x, y) at the classifier's most probable class, with that class and q(y | x).
  // x (784) -> { zLoc, zLogstd, y, yProbs }.
  encode(x) {
    const read = this.classify(x);
    return { ...this.encoder.forward(x, read.y), ...read };
  }

  // p(x | z, y)'s pixel probabilities: z (z_dim), y a class -> Float32Array(784) in [0, 1].
  xProbs(z, y) {
    return sigmoid(this.decoder.forward(z, y));
  }
}

// The networks the manifest describes: the labels model when the checkpoint has classes, else the VAE.
export function networks(manifest, buffer) {
  return manifest.checkpoint.classes ? new M2(manifest, buffer) : new VAE(manifest, buffer);
}
