/**
 * The page: the original dialog (LOGIN / SIGNUP, LIST, UPLD, DWLD, DELF, RDLOG, CLRLOG) as a web page, over the ferry
 * protocol (conn.ts). Everything a server or a user sent is put in the page as text (textContent, never HTML), so a
 * file named `<img src=x onerror=alert(1)>.txt` is only a name.
 */
import { renderEvent } from '../../audit/render.ts';
import type { AuditEvent } from '../../audit/event.ts';
import { formatBytes } from '../../core/size.ts';
import { formatTime } from '../../core/time.ts';
import { Connection, FerryPageError, type Message } from './conn.ts';
import { uploadFile, type UploadProgress, type UploadResult } from './upload.ts';

interface Entry {
  name: string;
  type: 'file' | 'dir';
  size: number;
  mtime: number;
}
interface Account {
  user: string;
  role: 'admin' | 'user';
  perms: string[];
}
interface Usage {
  bytes: number;
  files: number;
  maxBytes?: number;
  maxFiles?: number;
}

// --- DOM helpers: text only --------------------------------------------------------------------------------------

type Child = Node | string | null | undefined | false;
function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Record<string, unknown> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v as EventListener);
    else if (k === 'class') el.className = String(v);
    else if (k in el && typeof v !== 'string') (el as unknown as Record<string, unknown>)[k] = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  return el;
}

const app = document.getElementById('app') as HTMLElement;
const status = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });

function say(text: string, kind: 'info' | 'error' = 'info'): void {
  status.textContent = text;
  status.className = `status ${kind}`;
}

function describe(err: unknown): string {
  if (err instanceof FerryPageError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}


function join(folder: string, name: string): string {
  return folder === '' ? name : `${folder}/${name}`;
}

// --- theme -------------------------------------------------------------------------------------------------------

function applyTheme(theme: string | null): void {
  if (theme === 'dark' || theme === 'light') document.documentElement.dataset['theme'] = theme;
  else delete document.documentElement.dataset['theme'];
}
function themeButton(): HTMLButtonElement {
  return h('button', {
    type: 'button',
    class: 'ghost',
    title: 'Switch between the light and the dark theme',
    onclick: () => {
      const dark = document.documentElement.dataset['theme'] === 'dark' || (!document.documentElement.dataset['theme'] && matchMedia('(prefers-color-scheme: dark)').matches);
      applyTheme(dark ? 'light' : 'dark');
    },
  }, 'Theme');
}

// --- log-in ------------------------------------------------------------------------------------------------------

let conn: Connection | null = null;

async function connection(): Promise<Connection> {
  if (conn && !conn.closed) return conn;
  const opened = await Connection.open();
  conn = opened;
  if (!opened.welcome.features.includes('link')) say('This server does not offer download links: downloads need the ferry client', 'error');
  opened.onClose((err) => {
    // A connection the page let go (Log out) ends later, when the server has answered its close: by then the user may
    // be logged in again on a new one, which its end must not throw out.
    if (conn !== opened) return;
    if (account) say(`Disconnected: ${describe(err)}. Log in again to go on; an interrupted upload resumes when you choose the file again.`, 'error');
    account = null;
    showLogin();
  });
  return conn;
}

let account: Account | null = null;

function showLogin(): void {
  const user = h('input', { id: 'user', name: 'user', autocomplete: 'username', required: true, maxlength: 32, autofocus: true });
  const password = h('input', { id: 'password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const go = async (kind: 'login' | 'signup') => {
    if (!user.value || !password.value) return say('Enter a user name and a password', 'error');
    say(kind === 'login' ? 'Logging in…' : 'Signing up…');
    try {
      const c = await connection();
      account = await c.request<Account>({ t: kind, user: user.value, password: password.value });
      password.value = '';
      say(kind === 'signup' ? `Signed up as ${account.user}` : `Logged in as ${account.user}`);
      showFiles('');
    } catch (err) {
      say(describe(err), 'error');
    }
  };
  const form = h(
    'form',
    { class: 'login', onsubmit: (e: Event) => (e.preventDefault(), void go('login')) },
    h('h1', {}, 'ferry'),
    h('label', { for: 'user' }, 'User name'),
    user,
    h('label', { for: 'password' }, 'Password'),
    password,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Log in'), h('button', { type: 'button', class: 'secondary', onclick: () => void go('signup') }, 'Sign up')),
    h(
      'p',
      { class: 'hint' },
      'Did your browser warn about this server’s certificate? ferry makes its own. Open the certificate from the address bar and compare its SHA-256 fingerprint with the one `ferry serve` printed as a browser shows it (AB:CD:…) before you log in.',
    ),
  );
  app.replaceChildren(h('header', { class: 'bar' }, h('span', { class: 'brand' }, 'ferry'), h('span', { class: 'grow' }), themeButton()), h('main', {}, form, status));
  user.focus();
}

// --- files -------------------------------------------------------------------------------------------------------

type SortKey = 'name' | 'size' | 'mtime';
let sort: { key: SortKey; dir: 1 | -1 } = { key: 'name', dir: 1 };
let current = '';

function header(active: 'files' | 'log'): HTMLElement {
  const me = account as Account;
  return h(
    'header',
    { class: 'bar' },
    h('span', { class: 'brand' }, 'ferry'),
    h('nav', {}, h('button', { type: 'button', class: active === 'files' ? 'tab active' : 'tab', onclick: () => showFiles(current), 'aria-current': active === 'files' ? 'page' : undefined }, 'Files'), h('button', { type: 'button', class: active === 'log' ? 'tab active' : 'tab', onclick: () => void showLog(false), 'aria-current': active === 'log' ? 'page' : undefined }, 'Log')),
    h('span', { class: 'grow' }),
    h('span', { class: 'who' }, `${me.user}${me.role === 'admin' ? ' (admin)' : ''}`),
    themeButton(),
    h('button', {
      type: 'button',
      class: 'ghost',
      onclick: () => {
        account = null;
        conn?.close();
        conn = null;
        say('Logged out');
        showLogin();
      },
    }, 'Log out'),
  );
}

function breadcrumbs(path: string): HTMLElement {
  const parts = path === '' ? [] : path.split('/');
  const nav = h('nav', { class: 'crumbs', 'aria-label': 'Folder' });
  nav.append(h('button', { type: 'button', class: 'link', onclick: () => showFiles('') }, 'Home'));
  parts.forEach((p, i) => {
    nav.append(' / ');
    const to = parts.slice(0, i + 1).join('/');
    nav.append(i === parts.length - 1 ? h('span', { 'aria-current': 'location' }, p) : h('button', { type: 'button', class: 'link', onclick: () => showFiles(to) }, p));
  });
  return nav;
}

async function listFolder(path: string): Promise<{ entries: Entry[]; usage?: Usage }> {
  const c = await connection();
  const entries: Entry[] = [];
  const result = await c.request<{ count: number; bytes: number; usage?: Usage }>({ t: 'list', path }, (m: Message) => {
    if (m.t === 'entries') entries.push(...(m.entries as Entry[]));
  });
  return { entries, ...(result?.usage ? { usage: result.usage } : {}) };
}

function sorted(entries: Entry[]): Entry[] {
  const { key, dir } = sort;
  return [...entries].sort((a, b) => {
    if (a.type !== b.type) return a.type === 'dir' ? -1 : 1;
    const d = key === 'name' ? a.name.localeCompare(b.name) : key === 'size' ? a.size - b.size : a.mtime - b.mtime;
    return d * dir || a.name.localeCompare(b.name);
  });
}

const transfers = h('section', { class: 'transfers', 'aria-label': 'Transfers' });

async function showFiles(path: string): Promise<void> {
  if (!account) return showLogin();
  current = path;
  const table = h('table', { class: 'files' });
  const footer = h('p', { class: 'total' });
  const fileInput = h('input', { type: 'file', multiple: true, class: 'hidden', id: 'pick-files', onchange: () => void uploadPicked(fileInput.files, path) });
  const folderInput = h('input', { type: 'file', multiple: true, class: 'hidden', id: 'pick-folder', onchange: () => void uploadPicked(folderInput.files, path) });
  folderInput.setAttribute('webkitdirectory', '');
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    h('button', { type: 'button', onclick: () => fileInput.click() }, 'Upload files'),
    h('button', { type: 'button', class: 'secondary', onclick: () => folderInput.click() }, 'Upload a folder'),
    h('button', { type: 'button', class: 'secondary', onclick: () => void newFolder(path) }, 'New folder'),
    h('button', { type: 'button', class: 'ghost', onclick: () => void showFiles(path) }, 'Refresh'),
    fileInput,
    folderInput,
  );
  const drop = h('section', { class: 'drop', 'aria-label': 'Files in this folder (drop files or folders here to upload)' }, table, footer);
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void uploadDropped(e.dataTransfer, path);
  });
  app.replaceChildren(header('files'), h('main', {}, breadcrumbs(path), toolbar, status, drop, transfers));
  try {
    const { entries, usage } = await listFolder(path);
    drawTable(table, footer, entries, usage, path);
  } catch (err) {
    say(describe(err), 'error');
  }
}

function drawTable(table: HTMLTableElement, footer: HTMLElement, entries: Entry[], usage: Usage | undefined, path: string): void {
  const col = (key: SortKey, label: string) =>
    h('th', { scope: 'col', 'aria-sort': sort.key === key ? (sort.dir === 1 ? 'ascending' : 'descending') : 'none' },
      h('button', {
        type: 'button',
        class: 'link',
        onclick: () => {
          sort = { key, dir: sort.key === key ? (sort.dir === 1 ? -1 : 1) : 1 };
          drawTable(table, footer, entries, usage, path);
        },
      }, label, sort.key === key ? (sort.dir === 1 ? ' ▲' : ' ▼') : ''));
  const rows = sorted(entries).map((e) => {
    const full = join(path, e.name);
    const name =
      e.type === 'dir'
        ? h('button', { type: 'button', class: 'link folder', onclick: () => void showFiles(full) }, `${e.name}/`)
        : h('span', { class: 'file' }, e.name);
    return h(
      'tr',
      {},
      h('td', { class: 'name' }, name),
      h('td', { class: 'size' }, e.type === 'dir' ? '—' : h('span', { title: `${e.size} bytes` }, `${formatBytes(e.size)} (${e.size})`)),
      h('td', { class: 'mtime' }, formatTime(e.mtime)),
      h(
        'td',
        { class: 'actions' },
        e.type === 'file' && h('button', { type: 'button', class: 'ghost', onclick: () => void download(full, e), 'aria-label': `Download ${e.name}` }, 'Download'),
        h('button', { type: 'button', class: 'ghost', onclick: () => void renameEntry(full, e.name, path), 'aria-label': `Rename ${e.name}` }, 'Rename'),
        h('button', { type: 'button', class: 'ghost danger', onclick: () => void deleteEntry(full, e, path), 'aria-label': `Delete ${e.name}` }, 'Delete'),
      ),
    );
  });
  table.replaceChildren(
    h('thead', {}, h('tr', {}, col('name', 'Name'), col('size', 'Size'), col('mtime', 'Modified'), h('th', { scope: 'col' }, h('span', { class: 'sr' }, 'Actions')))),
    h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 4, class: 'empty' }, 'This folder is empty: upload files or drop them here'))])),
  );
  const bytes = entries.filter((e) => e.type === 'file').reduce((n, e) => n + e.size, 0);
  const count = entries.length;
  const lines = [`Total directory size: ${bytes} bytes (${formatBytes(bytes)}) in ${count} ${count === 1 ? 'entry' : 'entries'}`];
  if (usage) {
    const of = usage.maxBytes !== undefined ? ` of ${formatBytes(usage.maxBytes)}` : '';
    const files = usage.maxFiles !== undefined ? `, ${usage.files} of ${usage.maxFiles} files` : `, ${usage.files} files`;
    lines.push(`Quota: ${formatBytes(usage.bytes)}${of} used${files}`);
  }
  footer.replaceChildren(...lines.map((l) => h('span', {}, l)));
}

/**
 * A download: the server gives a short-lived, single-use link (request `link`) and the browser fetches it itself,
 * streaming to disk; the SHA-256 the server vouches for is shown beside it.
 */
async function download(full: string, e: Entry): Promise<void> {
  try {
    const c = await connection();
    const link = await c.request<{ url: string; size: number }>({ t: 'link', path: full });
    const a = h('a', { href: link.url, download: e.name, class: 'hidden' });
    document.body.append(a);
    a.click();
    setTimeout(() => a.remove(), 60_000);
    const row = h('div', { class: 'job' }, h('span', { class: 'job-name' }, full), h('span', {}, `downloading ${formatBytes(link.size)}`), h('span', { class: 'progress-text' }, 'SHA-256: asking the server…'));
    if (!downloadsTitle) {
      downloadsTitle = h('h2', {}, 'Downloads');
      transfers.append(downloadsTitle);
    }
    transfers.append(row);
    const st = await c.request<{ sha256?: string }>({ t: 'stat', path: full, sha256: true });
    (row.lastChild as HTMLElement).textContent = `SHA-256 (server): ${st.sha256 ?? 'unknown'}`;
    say(`Downloading ${e.name}`);
  } catch (err) {
    say(describe(err), 'error');
  }
}
let downloadsTitle: HTMLElement | null = null;

async function newFolder(path: string): Promise<void> {
  const name = prompt('New folder name');
  if (!name) return;
  try {
    await (await connection()).request({ t: 'mkdir', path: join(path, name), parents: true });
    say(`Created folder ${name}`);
  } catch (err) {
    say(describe(err), 'error');
  }
  await showFiles(path);
}

async function renameEntry(full: string, name: string, path: string): Promise<void> {
  const to = prompt(`Rename or move ${name} to (a path from your home):`, full);
  if (!to || to === full) return;
  try {
    await (await connection()).request({ t: 'rename', from: full, to });
    say(`Renamed ${name} to ${to}`);
  } catch (err) {
    say(describe(err), 'error');
  }
  await showFiles(path);
}

async function deleteEntry(full: string, e: Entry, path: string): Promise<void> {
  if (!confirm(`Delete ${e.type === 'dir' ? 'the folder' : 'the file'} ${e.name}? This cannot be undone.`)) return;
  try {
    await (await connection()).request({ t: 'delete', path: full });
    say(`Deleted ${e.name}`);
  } catch (err) {
    say(describe(err), 'error');
  }
  await showFiles(path);
}

// --- uploads -----------------------------------------------------------------------------------------------------

interface Job {
  file: File;
  path: string;
  row: HTMLElement;
  bar: HTMLProgressElement;
  text: HTMLElement;
  sent: number;
  abort: AbortController;
}

const jobs: Job[] = [];
let overall: HTMLElement | null = null;

function rateEta(sent: number, size: number, startedAt: number, base: number): string {
  const seconds = (performance.now() - startedAt) / 1000;
  const rate = seconds > 0.2 ? (sent - base) / seconds : 0;
  const eta = rate > 0 ? Math.ceil((size - sent) / rate) : null;
  return `${formatBytes(sent)} of ${formatBytes(size)}${rate > 0 ? `, ${formatBytes(rate)}/s` : ''}${eta !== null && sent < size ? `, ${eta} s left` : ''}`;
}

function drawOverall(): void {
  const total = jobs.reduce((n, j) => n + j.file.size, 0);
  const sent = jobs.reduce((n, j) => n + j.sent, 0);
  if (!overall) return;
  overall.textContent = jobs.length ? `${jobs.length} upload${jobs.length === 1 ? '' : 's'}: ${formatBytes(sent)} of ${formatBytes(total)}` : '';
}

async function uploadPicked(list: FileList | null, folder: string): Promise<void> {
  if (!list || list.length === 0) return;
  const files = [...list].map((file) => ({ file, path: join(folder, (file as File & { webkitRelativePath?: string }).webkitRelativePath || file.name) }));
  await uploadAll(files, folder);
}

/** Files and folders dropped on the page, folders walked (webkitGetAsEntry, in every current browser). */
async function uploadDropped(data: DataTransfer | null, folder: string): Promise<void> {
  if (!data) return;
  const files: Array<{ file: File; path: string }> = [];
  const walk = async (entry: FileSystemEntry, prefix: string): Promise<void> => {
    if (entry.isFile) {
      const file = await new Promise<File>((res, rej) => (entry as FileSystemFileEntry).file(res, rej));
      files.push({ file, path: join(folder, join(prefix, entry.name)) });
    } else if (entry.isDirectory) {
      const reader = (entry as FileSystemDirectoryEntry).createReader();
      for (;;) {
        const batch = await new Promise<FileSystemEntry[]>((res, rej) => reader.readEntries(res, rej));
        if (batch.length === 0) break;
        for (const child of batch) await walk(child, join(prefix, entry.name));
      }
    }
  };
  const entries = [...data.items].map((i) => i.webkitGetAsEntry()).filter((e): e is FileSystemEntry => e !== null);
  if (entries.length === 0) for (const f of data.files) files.push({ file: f, path: join(folder, f.name) });
  for (const e of entries) await walk(e, '');
  await uploadAll(files, folder);
}

/**
 * How long the page waits before each new try of an upload refused `busy` (another upload of the same file holds it:
 * one in another tab, or one the server (or another server behind the same balancer) is still putting away after a
 * reload): about half a minute in all, then the refusal stands.
 */
const BUSY_WAITS_MS = [1000, 2000, 4000, 8000, 15000];

/** Resolves after `ms`, or rejects `cancelled` as soon as `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const cancelled = () => {
      clearTimeout(timer);
      reject(new FerryPageError('cancelled', 'Cancelled'));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', cancelled);
      resolve();
    }, ms);
    if (signal.aborted) cancelled();
    else signal.addEventListener('abort', cancelled, { once: true });
  });
}

/**
 * `uploadFile`, tried again while the session lives on: up to three times when only the upload link's connection
 * dropped, and after a pause while another upload of the same file holds it (`busy`, BUSY_WAITS_MS). Each try
 * resumes from what the server kept.
 */
async function uploadResuming(c: Connection, job: Job, options: Parameters<typeof uploadFile>[3]): Promise<UploadResult> {
  let lost = 0;
  let busy = 0;
  for (;;) {
    try {
      return await uploadFile(c, job.file, job.path, options);
    } catch (err) {
      const code = (err as FerryPageError).code;
      if (c.closed || job.abort.signal.aborted) throw err;
      if (code === 'connection_lost' && ++lost < 3) {
        job.text.textContent = 'connection lost; resuming…';
        continue;
      }
      const wait = code === 'busy' ? BUSY_WAITS_MS[busy++] : undefined;
      if (wait === undefined) throw err;
      job.text.textContent = `another upload of this file is in progress; trying again in ${Math.round(wait / 1000)} s…`;
      await pause(wait, job.abort.signal);
    }
  }
}

async function uploadAll(files: Array<{ file: File; path: string }>, folder: string): Promise<void> {
  const c = await connection();
  if (!overall) {
    overall = h('p', { class: 'overall' });
    transfers.prepend(h('h2', {}, 'Uploads'), overall);
  }
  const mine: Job[] = files.map(({ file, path }) => {
    const bar = h('progress', { max: Math.max(file.size, 1), value: 0 });
    const text = h('span', { class: 'progress-text' }, 'waiting');
    const abort = new AbortController();
    const row = h('div', { class: 'job' }, h('span', { class: 'job-name' }, path), bar, text, h('button', { type: 'button', class: 'ghost', onclick: () => abort.abort(), 'aria-label': `Cancel the upload of ${path}` }, 'Cancel'));
    bar.setAttribute('aria-label', `Upload of ${path}`);
    transfers.append(row);
    return { file, path, row, bar, text, sent: 0, abort };
  });
  jobs.push(...mine);
  drawOverall();
  let ok = 0;
  // Three at a time: the protocol interleaves their frames on the one connection.
  const queue = [...mine];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const startedAt = performance.now();
      let base = 0;
      let drawnAt = 0;
      try {
        const result = await uploadResuming(c, job, {
          overwrite: true,
          signal: job.abort.signal,
          onProgress: (p: UploadProgress) => {
            const j = job as Job;
            if (p.phase === 'hashing') {
              j.text.textContent = `checking the ${formatBytes(p.resumedFrom)} already on the server…`;
              return;
            }
            base = p.resumedFrom;
            j.sent = p.sent;
            // Drawn five times a second at most: the link's request reports progress every few milliseconds, and text
            // that changes faster than that cannot be read (no measurable change in bench:web's CPU either way).
            if (p.phase === 'sending' && p.sent > p.resumedFrom && p.sent < p.size && performance.now() - drawnAt < 200) return;
            drawnAt = performance.now();
            j.bar.value = p.sent;
            j.text.textContent = p.phase === 'verifying' ? 'verifying…' : `${rateEta(p.sent, p.size, startedAt, base)}${p.resumedFrom ? ` (resumed at ${formatBytes(p.resumedFrom)})` : ''}`;
            drawOverall();
          },
        });
        job.text.textContent = `done, sha256 verified ${result.sha256.slice(0, 12)}…${result.resumedFrom ? ` (resumed at ${result.resumedFrom} bytes)` : ''}`;
        job.row.classList.add('done');
        job.row.querySelector('button')?.remove();
        ok++;
      } catch (err) {
        job.text.textContent = describe(err);
        job.row.classList.add('failed');
        job.row.querySelector('button')?.remove();
      }
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  // The connection went meanwhile, or the user logged out: the log-in screen is up and says why and how to go on
  // (resume by choosing the file again), which stays said; and it is not drawn again under a user who is typing.
  if (c.closed || !account) return;
  say(`${ok} of ${mine.length} file${mine.length === 1 ? '' : 's'} uploaded`, ok === mine.length ? 'info' : 'error');
  if (current === folder) await showFiles(folder);
}

// --- log ---------------------------------------------------------------------------------------------------------

async function showLog(all: boolean): Promise<void> {
  if (!account) return showLogin();
  const me = account;
  const table = h('table', { class: 'log' });
  const controls = h('div', { class: 'toolbar' });
  if (me.role === 'admin') {
    controls.append(
      h('button', { type: 'button', class: 'secondary', onclick: () => void showLog(!all) }, all ? 'Only my events' : 'Everyone’s events'),
      h('button', {
        type: 'button',
        class: 'danger',
        onclick: async () => {
          if (!confirm('Clear the audit log? The current log is archived and the new one starts with your name.')) return;
          try {
            const r = await (await connection()).request<{ archive: string }>({ t: 'clearlog' });
            say(`Log cleared; archived as ${r.archive}`);
          } catch (err) {
            say(describe(err), 'error');
          }
          await showLog(all);
        },
      }, 'Clear the log (CLRLOG)'),
    );
  } else {
    controls.append(
      h('button', {
        type: 'button',
        class: 'secondary',
        onclick: async () => {
          try {
            await (await connection()).request({ t: 'clearlog' });
          } catch (err) {
            say(describe(err), 'error');
          }
        },
      }, 'Clear the log (CLRLOG)'),
    );
  }
  app.replaceChildren(header('log'), h('main', {}, h('h2', {}, all ? 'Everyone’s events' : 'Your events'), controls, status, table));
  try {
    const events: AuditEvent[] = [];
    await (await connection()).request({ t: 'log', all, limit: 1000 }, (m) => {
      if (m.t === 'events') events.push(...(m.events as AuditEvent[]));
    });
    const rows = events.map((e) => {
      const line = renderEvent(e);
      const cut = line.indexOf(' - ');
      return h('tr', { class: e.result === 'error' ? 'failed' : '' }, h('td', { class: 'when' }, cut > 0 ? line.slice(0, cut) : e.time), h('td', {}, cut > 0 ? line.slice(cut + 3) : line));
    });
    table.replaceChildren(
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Time'), h('th', { scope: 'col' }, 'Event'))),
      h('tbody', {}, ...(rows.length ? rows : [h('tr', {}, h('td', { colspan: 2, class: 'empty' }, 'No events'))])),
    );
  } catch (err) {
    say(describe(err), 'error');
  }
}

showLogin();
