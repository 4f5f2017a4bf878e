// The page: sign in with an API key, upload files, list and manage them.

import { Api, ApiError, segment } from './api.js';
import { Upload, journal } from './uploader.js';

const KEY = 'ferry.api_key';
const PAGE_SIZE = 50;
const $ = (selector) => document.querySelector(selector);

let api = null;
const uploads = [];

// --- messages ---------------------------------------------------------------

/** Shows an error as the server said it: message, suggestion, error_uid. */
function errorElement(error) {
  const box = document.createElement('div');
  box.className = 'error';
  const problems = error instanceof ApiError ? error.errors : [{ message: error.message }];
  for (const problem of problems) {
    const message = document.createElement('p');
    message.textContent = problem.message;
    box.append(message);
    if (problem.suggestion) {
      const suggestion = document.createElement('p');
      suggestion.textContent = problem.suggestion;
      box.append(suggestion);
    }
    if (problem.error_uid) {
      const uid = document.createElement('p');
      uid.className = 'uid';
      uid.textContent = `error id: ${problem.error_uid}`;
      box.append(uid);
    }
  }
  return box;
}

function showError(error) {
  $('#messages').replaceChildren(errorElement(error));
}

function clearMessages() {
  $('#messages').replaceChildren();
}

// --- formatting ---------------------------------------------------------------

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min`;
}

// --- signing in -------------------------------------------------------------------

async function signIn(key) {
  const candidate = new Api(key);
  await candidate.get('files/info'); // a wrong key is refused here, in the server's words
  api = candidate;
  sessionStorage.setItem(KEY, key);
  $('#sign-in').hidden = true;
  for (const id of ['#upload', '#files', '#sign-out']) $(id).hidden = false;
  clearMessages();
  await registerDownloads(key);
  await Promise.all([showUnfinished(), listFiles()]);
}

function signOut() {
  sessionStorage.removeItem(KEY);
  location.reload();
}

// --- downloads, through the service worker (ui/sw.js) ------------------------------

let downloadWorker = null;

async function registerDownloads(key) {
  if (!('serviceWorker' in navigator)) return;
  navigator.serviceWorker.onmessage = (event) => {
    if (event.data?.wantKey) event.ports[0]?.postMessage({ key: api?.key });
  };
  const registration = await navigator.serviceWorker.register('ui/sw.js');
  const worker = registration.installing || registration.waiting || registration.active;
  if (worker.state !== 'activated') {
    await new Promise((resolve) => {
      worker.addEventListener('statechange', () => worker.state === 'activated' && resolve());
    });
  }
  downloadWorker = worker;
  worker.postMessage({ key });
}

// --- uploads -----------------------------------------------------------------------

/** Starts an upload per file; files that would take one name are refused together. */
function addFiles(files) {
  clearMessages();
  const byName = new Map();
  for (const file of files) {
    const name = file.name;
    byName.set(name, [...(byName.get(name) ?? []), file]);
  }
  const clashes = [...byName].filter(([, same]) => same.length > 1).map(([name]) => name);
  if (clashes.length) {
    showError(new Error(`More than one chosen file is named ${clashes.join(', ')}; ferry keeps one file per name. Choose them separately or rename them.`));
  }
  for (const [name, [file, ...others]] of byName) {
    if (others.length) continue;
    const busy = uploads.find((u) => u.name === name && (u.state === 'uploading' || u.state === 'paused'));
    if (busy) {
      showError(new Error(`${name} is already being uploaded.`));
      continue;
    }
    const upload = new Upload(file, name, api);
    uploads.push(upload);
    $('#uploads').prepend(uploadRow(upload));
    upload.run().then(() => {
      if (upload.state === 'done') {
        listFiles();
        showUnfinished();
      }
    });
  }
  render();
}

function button(text, onClick, label) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  if (label) b.setAttribute('aria-label', label);
  b.addEventListener('click', onClick);
  return b;
}

function uploadRow(upload) {
  const row = document.createElement('li');
  row.className = 'upload';
  row.dataset.fileName = upload.name;
  const name = document.createElement('div');
  name.className = 'name';
  name.textContent = upload.name;
  const progress = document.createElement('progress');
  progress.max = 1;
  progress.setAttribute('aria-label', `Upload of ${upload.name}`);
  const status = document.createElement('div');
  status.className = 'status';
  status.setAttribute('aria-live', 'polite');
  const problem = document.createElement('div');
  const actions = document.createElement('div');
  actions.className = 'actions';
  const pause = button('Pause', () => upload.pause(), `Pause ${upload.name}`);
  pause.className = 'pause';
  const resume = button('Resume', () => upload.resume(), `Resume ${upload.name}`);
  resume.className = 'resume';
  const cancel = button('Cancel', async () => {
    await upload.cancel();
    row.remove();
    uploads.splice(uploads.indexOf(upload), 1);
    showUnfinished();
    render();
  }, `Cancel ${upload.name}`);
  cancel.className = 'cancel';
  actions.append(pause, resume, cancel);
  row.append(name, progress, status, problem, actions);

  const update = () => {
    row.dataset.uploadState = upload.state;
    row.dataset.partsTotal = upload.partsTotal;
    row.dataset.partsDone = upload.partsDone;
    row.dataset.partsAlreadyThere = upload.partsAlreadyThere;
    row.dataset.partsRecovered = upload.partsRecovered;
    progress.value = upload.total ? upload.sent / upload.total : upload.state === 'done' ? 1 : 0;
    const speed = upload.speed;
    const parts = [`${bytes(upload.sent)} of ${bytes(upload.total)}`];
    if (upload.state === 'uploading' && speed > 0) {
      parts.push(`${bytes(speed)}/s`, `${duration((upload.total - upload.sent) / speed)} left`);
    }
    parts.push(upload.note);
    status.textContent = parts.filter(Boolean).join(' · ');
    problem.replaceChildren(...(upload.state === 'failed' && upload.error ? [errorElement(upload.error)] : []));
    pause.hidden = upload.state !== 'uploading';
    resume.hidden = upload.state !== 'paused';
    cancel.hidden = upload.state === 'done';
  };
  // Progress events come many times a frame: draw at most once a frame.
  let drawing = 0;
  upload.addEventListener('change', () => {
    drawing ||= requestAnimationFrame(() => {
      drawing = 0;
      update();
    });
    render();
  });
  update();
  return row;
}

let frame = 0;
/** The overall line, at most once a frame. */
function render() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    const total = uploads.reduce((sum, u) => sum + u.total, 0);
    const sent = uploads.reduce((sum, u) => sum + u.sent, 0);
    const going = uploads.filter((u) => u.state === 'uploading');
    const speed = going.reduce((sum, u) => sum + u.speed, 0);
    $('#overall').hidden = uploads.length === 0;
    $('#overall-progress').value = total ? sent / total : 1;
    const done = uploads.filter((u) => u.state === 'done').length;
    const line = [`${done} of ${uploads.length} files done`, `${bytes(sent)} of ${bytes(total)}`];
    if (going.length && speed > 0) line.push(`${bytes(speed)}/s`, `${duration((total - sent) / speed)} left`);
    $('#overall-text').textContent = line.join(' · ');
  });
}

/** Uploads the journal remembers that are not running in this tab. */
async function showUnfinished() {
  const entries = (await journal.all()).filter((entry) => !uploads.some((u) => u.key === entry.key && u.state !== 'done'));
  $('#unfinished').hidden = entries.length === 0;
  $('#unfinished-list').replaceChildren(
    ...entries.map((entry) => {
      const item = document.createElement('li');
      item.dataset.fileName = entry.name;
      item.append(`${entry.name} (${bytes(entry.size)}) `);
      item.append(
        button('Forget', async () => {
          await api.post(`files/uploads/${entry.upload_id}/abort`, {}).catch(() => {});
          await journal.remove(entry.key);
          showUnfinished();
        }, `Forget the unfinished upload of ${entry.name}`),
      );
      return item;
    }),
  );
}

/** Files and folders dropped on the page, folders walked. */
async function droppedFiles(items) {
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child);
      }
    }
  };
  const entries = [...items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  for (const entry of entries) await walk(entry);
  return files;
}

// --- files ---------------------------------------------------------------------------

let cursor = { after: null, before: null };

async function listFiles(page = {}) {
  const query = new URLSearchParams({ limit: PAGE_SIZE });
  const type = $('#type-filter').value;
  if (type) query.set('file_type', type);
  if (page.after) query.set('after', page.after);
  if (page.before) query.set('before', page.before);
  try {
    const [list, info] = await Promise.all([api.get(`files/metadata?${query}`), api.get('files/info')]);
    cursor = { after: list.next_cursor, before: list.prev_cursor };
    $('#older').disabled = !list.next_cursor;
    $('#newer').disabled = !list.prev_cursor;
    $('#file-rows').replaceChildren(...list.data.map(fileRow));
    $('#no-files').hidden = list.data.length > 0;
    $('#totals').textContent =
      `${info.num_files} files, ${bytes(info.num_bytes)}, ${info.num_ingested} with their attributes read`;
  } catch (e) {
    showError(e);
  }
}

function fileRow(file) {
  const row = document.createElement('tr');
  row.dataset.fileId = file.file_id;
  const cell = (text, className) => {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  };
  cell(file.file_id, 'name');
  cell(file.file_type);
  cell(bytes(file.num_bytes));
  cell(file.file_status.replace('FILE_STATUS_', '').toLowerCase(), 'status');
  cell(new Date(file.created_at).toLocaleString());
  const actions = cell('', 'actions');
  const download = document.createElement('a');
  download.className = 'button download';
  download.href = `ui/download/${segment(file.file_id)}`;
  download.textContent = 'Download';
  download.setAttribute('aria-label', `Download ${file.file_id}`);
  if (!downloadWorker) {
    download.removeAttribute('href');
    download.title = 'Downloads from this page need HTTPS (or localhost)';
  }
  actions.append(
    button('Details', () => showDetails(file.file_id), `Details of ${file.file_id}`),
    ' ',
    download,
    ' ',
    button('Delete', () => confirmDelete(file.file_id), `Delete ${file.file_id}`),
  );
  return row;
}

async function showDetails(fileId) {
  let file;
  try {
    file = await api.get(`files/metadata/${segment(fileId)}`);
  } catch (e) {
    showError(e);
    return;
  }
  const fields = [
    ['Name', file.file_id],
    ['Id', file.file_uid],
    ['Type', file.file_type],
    ['Size', `${bytes(file.num_bytes)} (${file.num_bytes.toLocaleString()} bytes)`],
    ['Status', file.file_status],
    ['Added', new Date(file.created_at).toLocaleString()],
    ['CRC32C', file.checksum_crc32c ?? 'not known'],
  ];
  for (const [name, value] of Object.entries(file.file_attributes ?? {})) {
    fields.push([name.replaceAll('_', ' '), Array.isArray(value) ? value.join(', ') : String(value)]);
  }
  $('#details-title').textContent = file.file_id;
  $('#details-list').replaceChildren(
    ...fields.flatMap(([name, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  $('#details').showModal();
}

function confirmDelete(fileId) {
  const dialog = $('#confirm-delete');
  $('#confirm-text').textContent = `${fileId} will be removed from ferry. This cannot be undone.`;
  dialog.returnValue = '';
  dialog.onclose = async () => {
    if (dialog.returnValue !== 'delete') return;
    try {
      await api.delete(`files/delete/${segment(fileId)}`);
    } catch (e) {
      showError(e);
    }
    listFiles();
  };
  dialog.showModal();
  $('#confirm-delete-button').focus();
}

// --- wiring ----------------------------------------------------------------------------

$('#sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const field = $('#api-key');
  try {
    await signIn(field.value.trim());
    field.value = '';
  } catch (e) {
    showError(e);
    field.focus();
  }
});
$('#sign-out').addEventListener('click', signOut);
for (const id of ['#choose-files', '#choose-folder']) {
  $(id).addEventListener('change', (event) => {
    addFiles([...event.target.files]);
    event.target.value = '';
  });
}
const zone = $('#drop-zone');
zone.addEventListener('dragover', (event) => {
  event.preventDefault();
  zone.classList.add('over');
});
zone.addEventListener('dragleave', () => zone.classList.remove('over'));
zone.addEventListener('drop', async (event) => {
  event.preventDefault();
  zone.classList.remove('over');
  addFiles(await droppedFiles(event.dataTransfer.items));
});
$('#type-filter').addEventListener('change', () => listFiles());
$('#refresh').addEventListener('click', () => listFiles());
$('#older').addEventListener('click', () => listFiles({ after: cursor.after }));
$('#newer').addEventListener('click', () => listFiles({ before: cursor.before }));
window.addEventListener('beforeunload', (event) => {
  if (uploads.some((u) => u.state === 'uploading')) event.preventDefault();
});

const saved = sessionStorage.getItem(KEY);
if (saved) {
  signIn(saved).catch((e) => {
    sessionStorage.removeItem(KEY);
    showError(e);
  });
}
// Re-render speeds and ETAs while uploads run.
setInterval(() => uploads.some((u) => u.state === 'uploading') && uploads.forEach((u) => u.changed()), 1000);
