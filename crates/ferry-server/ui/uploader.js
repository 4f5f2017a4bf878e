// One file's way to ferry: the direct-to-cloud flow (initiate, parts in
// parallel straight to their URLs, a checkpoint per part, complete with
// the whole file's CRC32C), or one `POST /files` for a small file. Parts
// are sent as slices of the File, which the browser reads from disk as it
// sends: nothing of the file is held in memory.
//
// A journal in IndexedDB remembers each upload by the file's name, size
// and modification time, so choosing the same file after a reload or a
// crash of the tab resumes it: the server answers the resumed initiate
// with only the parts not yet checkpointed.

import { ApiError, NetworkError, Stopped } from './api.js';

/** Files smaller than this go up in one request. */
const SIMPLE_BELOW = 4 * 1024 * 1024;
/** Part PUTs in flight for one file. */
const PARALLEL_PARTS = 4;
/** A part URL this close to expiry is refreshed before it is used. */
const URL_MARGIN_MS = 60_000;
/** The longest wait between tries while the network or server is away. */
const MAX_BACKOFF_MS = 30_000;

export const journal = {
  db: null,

  async open() {
    this.db ??= await new Promise((resolve, reject) => {
      const request = indexedDB.open('ferry', 1);
      request.onupgradeneeded = () => request.result.createObjectStore('uploads', { keyPath: 'key' });
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
    return this.db;
  },

  async run(mode, action) {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction('uploads', mode);
      const request = action(tx.objectStore('uploads'));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  },

  get: (key) => journal.run('readonly', (store) => store.get(key)),
  put: (entry) => journal.run('readwrite', (store) => store.put(entry)),
  remove: (key) => journal.run('readwrite', (store) => store.delete(key)),
  all: () => journal.run('readonly', (store) => store.getAll()),
};

/** How the journal knows a file again when it is chosen a second time. */
export function journalKey(file, name) {
  return JSON.stringify([name, file.size, file.lastModified]);
}

export class Upload extends EventTarget {
  /**
   * @param {File} file
   * @param {string} name the file name it gets on ferry (folders flattened)
   * @param {import('./api.js').Api} api
   */
  constructor(file, name, api) {
    super();
    this.file = file;
    this.name = name;
    this.api = api;
    this.key = journalKey(file, name);
    this.state = 'uploading';
    this.note = 'starting';
    this.error = null;
    this.total = file.size;
    this.confirmed = 0; // bytes in parts the server has stored
    this.inFlight = new Map(); // part number -> bytes sent so far
    this.partsTotal = 0;
    this.partsDone = 0;
    this.partsAlreadyThere = 0;
    this.partsRecovered = 0; // stored before a reload, checkpointed after it
    this.requests = new Set();
    this.paused = false;
    this.cancelled = false;
    this.waiters = new Set();
    this.samples = [];
  }

  get sent() {
    let bytes = this.confirmed;
    for (const n of this.inFlight.values()) bytes += n;
    return Math.min(bytes, this.total);
  }

  /** Bytes per second over the last few seconds. */
  get speed() {
    const now = performance.now();
    this.samples.push([now, this.sent]);
    while (this.samples.length > 2 && now - this.samples[0][0] > 5000) this.samples.shift();
    const [t0, b0] = this.samples[0];
    return now - t0 > 250 ? ((this.sent - b0) * 1000) / (now - t0) : 0;
  }

  changed(note) {
    if (note !== undefined) this.note = note;
    this.dispatchEvent(new Event('change'));
  }

  setState(state, note) {
    this.state = state;
    this.changed(note);
  }

  pause() {
    if (this.state !== 'uploading') return;
    this.paused = true;
    for (const xhr of this.requests) xhr.abort();
    this.wakeAll();
    this.changed('pausing');
  }

  resume() {
    if (!this.paused) return;
    this.paused = false;
    this.wakeAll();
  }

  async cancel() {
    this.cancelled = true;
    for (const xhr of this.requests) xhr.abort();
    this.wakeAll();
    if (this.uploadId) {
      await this.api.post(`files/uploads/${this.uploadId}/abort`, {}).catch(() => {});
      await journal.remove(this.key);
    }
  }

  /** Runs to done or failed; never throws. */
  async run() {
    try {
      if (this.total < SIMPLE_BELOW) await this.sendWhole();
      else await this.sendInParts();
      this.setState('done', 'stored');
    } catch (e) {
      if (this.cancelled) return;
      this.error = e;
      this.setState('failed', e.message);
    }
  }

  /** Waits while paused; throws Stopped once cancelled. */
  async checkGoing() {
    while (this.paused && !this.cancelled) {
      if (this.state !== 'paused' && this.requests.size === 0) {
        this.setState('paused', `paused at ${this.partsDone} of ${this.partsTotal} parts`);
      }
      await this.waitForWake();
      if (!this.paused && this.state === 'paused') this.setState('uploading', 'resuming');
    }
    if (this.cancelled) throw new Stopped('cancelled');
  }

  /**
   * Runs `attempt` until it succeeds, waiting longer each time the network
   * or the server is away; a pause waits, a refusal is thrown.
   */
  async retrying(what, attempt) {
    for (let tries = 0; ; tries++) {
      await this.checkGoing();
      try {
        return await attempt();
      } catch (e) {
        if (e instanceof Stopped) {
          if (this.cancelled) throw e;
          tries = -1;
          continue; // paused: wait above, then try again
        }
        if (!e.retryable) throw e;
        const wait = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** tries);
        this.changed(`${what}: ${e.message}; trying again in ${Math.round(wait / 1000)} s`);
        await this.waitForWake(wait);
      }
    }
  }

  /**
   * Resolves at the next pause, resume or cancel, or after `ms` (if given),
   * or when the browser says the network is back.
   */
  waitForWake(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        window.removeEventListener('online', done);
        this.waiters.delete(done);
        resolve();
      };
      const timer = ms ? setTimeout(done, ms) : undefined;
      if (ms) window.addEventListener('online', done);
      this.waiters.add(done);
    });
  }

  wakeAll() {
    for (const wake of [...this.waiters]) wake();
  }

  async sendWhole() {
    this.partsTotal = 1;
    const form = new FormData();
    form.append('file', this.file, this.name);
    await this.retrying('sending', async () => {
      this.inFlight.set(0, 0);
      try {
        await this.api.send('POST', this.api.constructor.url('files'), form, {
          authorized: true,
          requests: this.requests,
          onProgress: (loaded) => {
            this.inFlight.set(0, loaded);
            this.changed('sending');
          },
        });
      } finally {
        this.inFlight.delete(0);
      }
    });
    this.confirmed = this.total;
    this.partsDone = 1;
  }

  async sendInParts() {
    const remembered = await journal.get(this.key);
    let started = await this.retrying('starting', () => this.initiate(Boolean(remembered)));
    if (remembered && started.upload_id !== remembered.upload_id) {
      // Our upload expired or was aborted, and another of this name (not
      // ours: its bytes may differ) is in progress: start one of our own.
      started = started.is_resume ? await this.retrying('starting', () => this.initiate(false)) : started;
    }
    this.uploadId = started.upload_id;
    const ours = remembered?.upload_id === this.uploadId;
    this.tokens = ours ? { ...remembered.tokens } : {};
    this.entry = { key: this.key, name: this.name, size: this.total, upload_id: this.uploadId, tokens: this.tokens };
    await journal.put(this.entry);
    this.partsTotal = started.num_parts;
    let missing = started.parts;
    if (started.is_resume && ours) missing = await this.checkpointRemembered(missing);
    this.partsAlreadyThere = started.num_parts - missing.length;
    this.partsDone = this.partsAlreadyThere;
    this.confirmed = this.total - missing.reduce((sum, part) => sum + part.length, 0);
    this.changed(started.is_resume ? `resumed: ${this.partsAlreadyThere} of ${this.partsTotal} parts already stored` : 'sending');

    // Without an algorithm the server takes no checksum (a store that
    // cannot verify one); the parts' own checks still hold.
    const checksum = started.integrity_algorithm === 'crc32c' ? this.checksum() : Promise.resolve(undefined);
    const queue = [...missing];
    const worker = async () => {
      for (let part = queue.shift(); part; part = queue.shift()) await this.sendPart(part);
    };
    await Promise.all(Array.from({ length: PARALLEL_PARTS }, worker));
    if (started.integrity_algorithm === 'crc32c') this.changed('checking the whole file');
    const integrity_checksum = await checksum;
    this.changed('completing');
    await this.retrying('completing', () =>
      this.api.post(`files/uploads/${this.uploadId}/complete`, { parts: [], integrity_checksum }),
    ).catch((e) => {
      // A complete answered before the connection dropped: the retry sees it done.
      if (e instanceof ApiError && e.code === 'upload_completed') return;
      throw e;
    });
    await journal.remove(this.key);
  }

  initiate(resume) {
    return this.api.post('files/uploads/initiate', {
      filename: this.name,
      file_type: this.file.type || 'application/octet-stream',
      num_bytes: this.total,
      resume_if_started: resume,
    });
  }

  async sendPart(part) {
    let token;
    await this.retrying(`part ${part.part_number}`, async () => {
      if (Date.parse(part.expires_at) - Date.now() < URL_MARGIN_MS) part = await this.freshUrl(part);
      this.inFlight.set(part.part_number, 0);
      try {
        const xhr = await this.api.send('PUT', part.url, this.file.slice(part.offset, part.offset + part.length), {
          requests: this.requests,
          onProgress: (loaded) => {
            this.inFlight.set(part.part_number, loaded);
            this.changed();
          },
        });
        token = xhr.getResponseHeader('ETag');
        if (!token) throw new ApiError(xhr.status, [{ code: 'no_etag', message: 'the store did not expose the ETag of a part (check its CORS rules)' }]);
      } catch (e) {
        // An expired or refused URL: a fresh one once, then the refusal stands.
        if (e instanceof ApiError && e.status === 403 && !part.refreshed) {
          part = { ...(await this.freshUrl(part)), refreshed: true };
          throw Object.assign(new NetworkError(e.message), { retryable: true });
        }
        throw e;
      } finally {
        this.inFlight.delete(part.part_number);
      }
    });
    // In the journal first: a tab that dies before the checkpoint still
    // knows the part is stored.
    this.tokens[part.part_number] = token;
    await journal.put(this.entry);
    await this.retrying(`part ${part.part_number}`, () =>
      this.api.post(`files/uploads/${this.uploadId}/parts/checkpoint`, {
        parts: [{ part_number: part.part_number, part_token: token }],
      }),
    );
    this.confirmed += part.length;
    this.partsDone += 1;
    this.changed('sending');
  }

  /**
   * Checkpoints, in one request, the parts the journal saw stored that the
   * server has no checkpoint of (the tab died in between); the parts still
   * to send. A token the store no longer holds is refused, and its part sent.
   */
  async checkpointRemembered(missing) {
    const known = missing.filter((part) => this.tokens[part.part_number]);
    if (!known.length) return missing;
    const parts = known.map((part) => ({ part_number: part.part_number, part_token: this.tokens[part.part_number] }));
    try {
      await this.retrying('checking stored parts', () => this.api.post(`files/uploads/${this.uploadId}/parts/checkpoint`, { parts }));
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== 'invalid_part_token') throw e;
      for (const part of known) delete this.tokens[part.part_number];
      return missing;
    }
    this.partsRecovered = known.length;
    return missing.filter((part) => !this.tokens[part.part_number]);
  }

  async freshUrl(part) {
    const answer = await this.api.post(`files/uploads/${this.uploadId}/parts/urls`, { part_numbers: [part.part_number] });
    return answer.parts[0];
  }

  /** The whole file's CRC32C, from a worker reading the file beside the uploads. */
  checksum() {
    return new Promise((resolve, reject) => {
      const worker = new Worker(new URL('crc32c-worker.js', import.meta.url));
      worker.onmessage = ({ data }) => {
        worker.terminate();
        if (data.error) reject(new Error(data.error));
        else resolve(data.checksum);
      };
      worker.onerror = (e) => {
        worker.terminate();
        reject(new Error(`the checksum worker failed: ${e.message}`));
      };
      worker.postMessage({ file: this.file });
    });
  }
}
