// The one drawing helper: images as vectors of size x size values in [0, 1] into a canvas, white on
// black and rounded to 0..255 as images.py draws the PNGs, so an image looks the same in every panel
// and in the PNGs. `size` is the manifest's image size (data.js's `Model.size`).

function grey(v, threshold) {
  return threshold === null ? Math.round(Math.min(1, Math.max(0, v)) * 255) : (v >= threshold ? 255 : 0);
}

// Whether `paint` would draw the image as one flat value (an empty or a full cell).
export function flat(image, threshold = null) {
  const first = grey(image[0], threshold);
  return image.every((v) => grey(v, threshold) === first);
}

// images: Float32Array(size * size) each, drawn `cols` to a row; `threshold` draws each pixel black or white.
export function paint(canvas, images, { size, cols = 1, threshold = null }) {
  const rows = Math.ceil(images.length / cols);
  if (canvas.width !== cols * size || canvas.height !== rows * size) {
    canvas.width = cols * size;
    canvas.height = rows * size;
  }
  const context = canvas.getContext("2d");
  const picture = context.createImageData(canvas.width, canvas.height);
  const rgba = picture.data;
  images.forEach((image, k) => {
    const top = Math.floor(k / cols) * size, left = (k % cols) * size;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const at = ((top + y) * canvas.width + left + x) * 4;
        rgba[at] = rgba[at + 1] = rgba[at + 2] = grey(image[y * size + x], threshold);
        rgba[at + 3] = 255;
      }
    }
  });
  context.putImageData(picture, 0, 0);
}
