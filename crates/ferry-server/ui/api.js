// Calls to ferry's API from the page, and what its errors say.

const BASE = new URL('v0.5/', document.baseURI);

/** An answer in the API's error envelope (or, from a store, anything not 2xx). */
export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((e) => e.message).join('; '));
    this.status = status;
    this.errors = errors;
  }

  get code() {
    return this.errors[0]?.code;
  }

  /** Whether trying the same request again later may succeed. */
  get retryable() {
    return this.status === 429 || this.status >= 500 || this.code === 'part_upload_in_progress';
  }

  static from(status, text) {
    try {
      const body = JSON.parse(text);
      if (Array.isArray(body.errors) && body.errors.length) return new ApiError(status, body.errors);
    } catch {
      // Not the envelope: an S3-compatible store's XML, or a proxy's page.
    }
    const message = text.match(/<Message>([^<]*)<\/Message>/)?.[1] ?? (text.trim().slice(0, 200) || `HTTP ${status}`);
    return new ApiError(status, [{ code: `http_${status}`, message }]);
  }
}

/** The request never got an answer: the network or the server is away. */
export class NetworkError extends Error {
  retryable = true;
}

/** The page stopped the request itself (pause, cancel). */
export class Stopped extends Error {}

export class Api {
  constructor(key) {
    this.key = key;
  }

  async call(method, path, json, signal) {
    const headers = { Authorization: `Bearer ${this.key}` };
    let body;
    if (json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(new URL(path, BASE), { method, headers, body, signal });
    } catch (e) {
      if (signal?.aborted) throw new Stopped('stopped');
      throw new NetworkError(`no answer from the server (${e.message})`);
    }
    const text = await response.text();
    if (!response.ok) throw ApiError.from(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  get(path, signal) {
    return this.call('GET', path, undefined, signal);
  }

  post(path, json, signal) {
    return this.call('POST', path, json, signal);
  }

  delete(path) {
    return this.call('DELETE', path);
  }

  /** Sends `body` with XMLHttpRequest, which reports upload progress (fetch does not). */
  send(method, url, body, { authorized = false, onProgress, requests }) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url);
      if (authorized) xhr.setRequestHeader('Authorization', `Bearer ${this.key}`);
      xhr.upload.onprogress = (e) => onProgress?.(e.loaded);
      xhr.onload = () => {
        requests?.delete(xhr);
        if (xhr.status >= 200 && xhr.status < 300) resolve(xhr);
        else reject(ApiError.from(xhr.status, xhr.responseText));
      };
      xhr.onerror = () => {
        requests?.delete(xhr);
        reject(new NetworkError('the connection was lost'));
      };
      xhr.onabort = () => {
        requests?.delete(xhr);
        reject(new Stopped('stopped'));
      };
      requests?.add(xhr);
      xhr.send(body);
    });
  }

  static url(path) {
    return new URL(path, BASE);
  }
}

/** A path segment for a file name: names may hold any character but `/`. */
export function segment(name) {
  return encodeURIComponent(name);
}
