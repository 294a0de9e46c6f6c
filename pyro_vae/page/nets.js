// The VAE's two networks over Float32Arrays, mirroring pyro_vae/model.py line for line.
// Weights come from weights.bin as torch stores them, a layer's weight (out, in) row-major; each
// layer keeps a transposed copy so that y = W x + b can add up x_i times column i of W, skipping
// the inputs that are 0: most pixels of a digit, and about 70% of the units after a ReLU. That
// halves the decoder's work (a 10x10 grid in the page's time budget) and more for the encoder.
// Sums run in float64 and are rounded to float32 per layer, as torch's fp32 layers round.
// tests/test_explore.py holds these outputs against VAE.x_probs and VAE.encoder.

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
    this.net = [new Linear(layers, "decoder.net.0"), new Linear(layers, "decoder.net.2"),
                new Linear(layers, "decoder.net.4")];
  }

  // z: Float32Array(z_dim) -> x_logits: Float32Array(784).
  forward(z) {
    const h = relu(this.net[1].forward(relu(this.net[0].forward(z))));
    return this.net[2].forward(h);
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

  // p(x | z)'s pixel probabilities: z (z_dim) -> Float32Array(784) in [0, 1].
  xProbs(z) {
    return sigmoid(this.decoder.forward(z));
  }
}
