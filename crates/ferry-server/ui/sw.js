// Downloads for the page: a request to ui/download/<name> is answered with
// ferry's download of that file, fetched with the tab's API key. The
// browser streams it to disk as any download, so no file is held in
// memory, and the key never appears in a URL or a cookie.

let key = null;

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));
self.addEventListener('message', (event) => {
  if (event.data && 'key' in event.data) key = event.data.key;
});

self.addEventListener('fetch', (event) => {
  const prefix = new URL('download/', self.registration.scope).pathname;
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin || !url.pathname.startsWith(prefix)) return;
  event.respondWith(download(url.pathname.slice(prefix.length)));
});

async function download(encodedName) {
  // A worker stopped while idle forgets the key: ask the open pages again.
  const apiKey = key ?? (await askPages());
  if (!apiKey) return new Response('Sign in on the ferry page first.', { status: 401 });
  return fetch(new URL(`../v0.5/files/download/${encodedName}`, self.registration.scope), {
    headers: { Authorization: `Bearer ${apiKey}` },
  });
}

async function askPages() {
  const pages = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const answers = pages.map(
    (page) =>
      new Promise((resolve) => {
        const channel = new MessageChannel();
        channel.port1.onmessage = (event) => (event.data.key ? resolve(event.data.key) : undefined);
        page.postMessage({ wantKey: true }, [channel.port2]);
      }),
  );
  const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 2000));
  key = await Promise.race([...answers, timeout]);
  return key;
}
