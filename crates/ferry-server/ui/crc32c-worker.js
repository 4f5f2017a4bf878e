// The whole file's CRC32C (Castagnoli), the checksum `complete` is given,
// computed off the page's thread from the file read as a stream: no more
// of the file is in memory than one chunk of the browser's reader.
// Slicing-by-8: eight table lookups per 8 bytes.

const POLY = 0x82f63b78;
const T = new Uint32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let t = 1; t < 8; t++) T[t * 256 + n] = (T[(t - 1) * 256 + n] >>> 8) ^ T[T[(t - 1) * 256 + n] & 0xff];
}

function update(crc, bytes) {
  let i = 0;
  const end8 = bytes.length - (bytes.length % 8);
  for (; i < end8; i += 8) {
    const a = (crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    crc =
      T[7 * 256 + (a & 0xff)] ^
      T[6 * 256 + ((a >>> 8) & 0xff)] ^
      T[5 * 256 + ((a >>> 16) & 0xff)] ^
      T[4 * 256 + (a >>> 24)] ^
      T[3 * 256 + bytes[i + 4]] ^
      T[2 * 256 + bytes[i + 5]] ^
      T[256 + bytes[i + 6]] ^
      T[bytes[i + 7]];
  }
  for (; i < bytes.length; i++) crc = (crc >>> 8) ^ T[(crc ^ bytes[i]) & 0xff];
  return crc >>> 0;
}

self.onmessage = async ({ data: { file } }) => {
  try {
    let crc = 0xffffffff;
    const reader = file.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      crc = update(crc, value);
    }
    crc = (crc ^ 0xffffffff) >>> 0;
    // What the API wants: base64 of the four bytes, big-endian.
    const bytes = String.fromCharCode(crc >>> 24, (crc >>> 16) & 0xff, (crc >>> 8) & 0xff, crc & 0xff);
    self.postMessage({ checksum: btoa(bytes) });
  } catch (e) {
    self.postMessage({ error: `could not read the file to check it: ${e.message}` });
  }
};
