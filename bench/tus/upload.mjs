// One upload with tus-js-client, the way its documentation shows for
// Node: one stream of 8 MiB PATCHes.
// Usage: node upload.mjs ENDPOINT FILE
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const [endpoint, path] = process.argv.slice(2);
await new Promise((resolve, reject) => {
  const upload = new tus.Upload(fs.createReadStream(path), {
    endpoint,
    chunkSize: 8 * 1024 * 1024,
    uploadSize: fs.statSync(path).size,
    retryDelays: [],
    onError: reject,
    onSuccess: resolve,
  });
  upload.start();
});
