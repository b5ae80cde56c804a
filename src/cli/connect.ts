import { readdir, stat, mkdir } from 'node:fs/promises';
import { basename, join, posix, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import pMap from 'p-map';
import { renderEvent } from '../audit/render.ts';
import { parseAddress } from '../core/address.ts';
import { connect, trustNotice, type FerryClient, type HostCheck, type UsageInfo } from '../client/mod.ts';
import { FerryError } from '../core/errors.ts';
import { readCaFile } from '../tls/ca.ts';
import type { Entry } from '../core/types.ts';
import { formatBytes, formatRate, formatSeconds, formatTime, splitWords } from './format.ts';
import { clientEncodings } from './bundled-plugins.ts';
import { progressBar } from './progress.ts';
import { Prompt } from './prompt.ts';

export interface ConnectCliOptions {
  user?: string;
  fingerprint?: string;
  /** `--ca FILE`: PEM certificates of the CAs to trust instead of the built-in ones (else FERRY_CA). */
  ca?: string;
  insecure?: boolean;
  /** Not a terminal: create the account (FERRY_PASSWORD) before running commands. */
  signup?: boolean;
}

/** The commands, with the original's words first; aliases fit shell habits. */
const COMMANDS: ReadonlyArray<{ name: string; aliases: string[]; usage: string; help: string }> = [
  { name: 'CONN', aliases: [], usage: 'CONN', help: 'Connect to the server again (LOGIN or SIGNUP)' },
  { name: 'UPLD', aliases: ['put'], usage: 'UPLD path [remote] [-r] [-n] [--resume]', help: 'Upload a file (-r: a directory)' },
  { name: 'LIST', aliases: ['ls'], usage: 'LIST [dir]', help: 'List files' },
  { name: 'DWLD', aliases: ['get'], usage: 'DWLD path [local] [-r] [-n]', help: 'Download a file (-r: a directory)' },
  { name: 'DELF', aliases: ['rm'], usage: 'DELF path', help: 'Delete a file (or an empty directory)' },
  { name: 'MKDIR', aliases: [], usage: 'MKDIR dir', help: 'Create a directory (and its parents)' },
  { name: 'RENAME', aliases: ['mv'], usage: 'RENAME from to', help: 'Rename or move a file or directory' },
  { name: 'STAT', aliases: [], usage: 'STAT path [--sha256]', help: 'Show one file or directory (--sha256: its hash)' },
  { name: 'RDLOG', aliases: ['log'], usage: 'RDLOG [--json]', help: 'Read log (an admin sees everyone\'s)' },
  { name: 'CLRLOG', aliases: [], usage: 'CLRLOG', help: 'Clear log (admin; the old log is archived)' },
  { name: 'HELP', aliases: ['?'], usage: 'HELP', help: 'Show this list' },
  { name: 'QUIT', aliases: ['exit', 'bye'], usage: 'QUIT', help: 'Exit' },
];

function lookup(word: string): string | null {
  const w = word.toLowerCase();
  for (const c of COMMANDS) if (c.name.toLowerCase() === w || c.aliases.includes(w)) return c.name;
  return null;
}

export function helpText(): string {
  const width = Math.max(...COMMANDS.map((c) => c.usage.length));
  return [
    'Call one of the following functions:',
    ...COMMANDS.map((c) => `${c.usage.padEnd(width)} : ${c.help}${c.aliases.length ? ` (${c.aliases.join(', ')})` : ''}`),
  ].join('\n');
}

/** Separates flags (-r, -n, --resume, --json) from words. */
function parseArgs(words: string[], allowed: string[]): { args: string[]; flags: Set<string> } {
  const args: string[] = [];
  const flags = new Set<string>();
  for (const w of words) {
    if (w.startsWith('-') && w.length > 1) {
      if (!allowed.includes(w)) throw new Error(`Unknown option '${w}'${allowed.length ? ` (allowed: ${allowed.join(' ')})` : ''}`);
      flags.add(w);
    } else {
      args.push(w);
    }
  }
  return { args, flags };
}

/** `Quota: 9.10 MiB of 10.0 MiB used (9542042 of 10485760 bytes), 12 of 100 files` (`Usage: ...` without limits). */
function usageLine(u: UsageInfo): string {
  const bytes = u.maxBytes !== undefined
    ? `${formatBytes(u.bytes)} of ${formatBytes(u.maxBytes)} used (${u.bytes} of ${u.maxBytes} bytes)`
    : `${formatBytes(u.bytes)} used (${u.bytes} bytes)`;
  const files = u.maxFiles !== undefined ? `${u.files} of ${u.maxFiles} files` : `${u.files} ${u.files === 1 ? 'file' : 'files'}`;
  return `${u.maxBytes !== undefined || u.maxFiles !== undefined ? 'Quota' : 'Usage'}: ${bytes}, ${files}`;
}

function need(args: string[], min: number, max: number, usage: string): void {
  if (args.length < min || args.length > max) throw new Error(`Usage: ${usage}`);
}

/** Joins remote path parts with '/', dropping empty ones. */
function remoteJoin(...parts: string[]): string {
  return posix.join(...parts.filter((p) => p !== '' && p !== '.')).replace(/^\.\/?/, '');
}

class Shell {
  client: FerryClient | null = null;
  private keepalive: NodeJS.Timeout | null = null;

  constructor(
    private readonly target: { host: string; port: number },
    private readonly options: ConnectCliOptions,
    private readonly prompt: Prompt | null,
    private readonly out: (line: string) => void,
    /** The CA certificates of --ca or FERRY_CA, read once; undefined for the built-in ones. */
    private readonly ca: string[] | undefined = undefined,
  ) {}

  get interactive(): boolean {
    return this.prompt !== null;
  }

  async open(): Promise<void> {
    const { host, port } = this.target;
    this.out('Sending server request...');
    const client = await connect({
      host,
      port,
      ...(this.options.insecure ? { insecure: true } : {}),
      ...(this.options.fingerprint ? { fingerprint: this.options.fingerprint } : {}),
      ...(this.ca ? { ca: this.ca } : {}),
      ...(this.prompt ? { confirmHost: (check: HostCheck) => this.confirmHost(check) } : {}),
      encodings: clientEncodings(),
    });
    this.client = client;
    const notice = trustNotice(client.trust);
    if (notice) this.out(notice);
    const verified = client.verifiedBy ? `, verified by ${client.verifiedBy} for ${host}` : '';
    const how = client.fingerprint ? `TLS, fingerprint ${client.fingerprint}${verified}` : 'PLAIN TCP, NOT ENCRYPTED';
    this.out(`Connection successful (${how})`);
    if (this.interactive) {
      this.keepalive = setInterval(() => void client.ping().catch(() => {}), 60_000);
      this.keepalive.unref();
    }
  }

  private async confirmHost(check: HostCheck): Promise<boolean> {
    const prompt = this.prompt as Prompt;
    this.out(`The authenticity of server ${check.host}:${check.port} can't be established.`);
    this.out(`Its certificate fingerprint is ${check.fingerprint}.`);
    return prompt.confirm('Are you sure you want to continue connecting?');
  }

  /** The original flow: "LOGIN or SIGNUP", user name, hidden password. */
  async authenticateInteractively(): Promise<boolean> {
    const prompt = this.prompt as Prompt;
    const client = this.client as FerryClient;
    for (let attempt = 0; attempt < 5; attempt++) {
      this.out('\nChoose an action.');
      const action = (await prompt.ask('LOGIN or SIGNUP: '))?.trim().toUpperCase();
      if (action === undefined || action === null) return false;
      if (action !== 'LOGIN' && action !== 'SIGNUP') {
        this.out('Please enter a valid action.');
        continue;
      }
      const user = this.options.user ?? (await prompt.ask('Enter your username: '))?.trim();
      if (!user) return false;
      const password = await prompt.askHidden('Enter your password: ');
      if (password === null) return false;
      try {
        if (action === 'SIGNUP') {
          const again = await prompt.askHidden('Repeat your password: ');
          if (again !== password) {
            this.out('The passwords do not match.');
            continue;
          }
          await client.signup(user, password);
          this.out(`Account '${user}' created.`);
        } else {
          await client.login(user, password);
        }
        this.out('Authentication successful');
        return true;
      } catch (err) {
        if (!(err instanceof FerryError) || err.fatal) throw err;
        this.out(`Authentication failed: ${err.message}`);
      }
    }
    return false;
  }

  async authenticateFromEnvironment(): Promise<void> {
    const client = this.client as FerryClient;
    const user = this.options.user;
    const password = process.env.FERRY_PASSWORD;
    if (!user) throw new Error('Not a terminal: pass --user NAME and set FERRY_PASSWORD');
    if (password === undefined) throw new Error('Not a terminal: set FERRY_PASSWORD to log in');
    if (this.options.signup) await client.signup(user, password);
    else await client.login(user, password);
    this.out('Authentication successful');
  }

  close(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = null;
  }

  /** Runs one command line; returns 'quit' when the session should end. */
  async run(line: string): Promise<'quit' | void> {
    const words = splitWords(line.trim());
    if (words.length === 0) return;
    const [word, ...rest] = words as [string, ...string[]];
    const command = lookup(word);
    if (!command) throw new Error(`Unknown command '${word}'; type HELP for the list`);
    if (command === 'HELP') return void this.out(helpText());
    if (command === 'QUIT') return 'quit';
    if (command === 'CONN') return this.reconnect();
    const client = this.client;
    if (!client || client.closed) throw new Error('Not connected; use CONN to connect again');
    switch (command) {
      case 'UPLD':
        return this.upload(client, rest);
      case 'DWLD':
        return this.download(client, rest);
      case 'LIST':
        return this.list(client, rest);
      case 'DELF': {
        const { args } = parseArgs(rest, []);
        need(args, 1, 1, 'DELF path');
        await client.delete(args[0] as string);
        return void this.out(`Deleted '${args[0]}'`);
      }
      case 'MKDIR': {
        const { args } = parseArgs(rest, ['-p']);
        need(args, 1, 1, 'MKDIR dir');
        await client.mkdir(args[0] as string, true);
        return void this.out(`Created directory '${args[0]}'`);
      }
      case 'RENAME': {
        const { args, flags } = parseArgs(rest, ['-f']);
        need(args, 2, 2, 'RENAME from to');
        await client.rename(args[0] as string, args[1] as string, flags.has('-f'));
        return void this.out(`Renamed '${args[0]}' to '${args[1]}'`);
      }
      case 'STAT': {
        const { args, flags } = parseArgs(rest, ['--sha256']);
        need(args, 1, 1, 'STAT path [--sha256]');
        const { entry: e, sha256, usage } = await client.statFull(args[0] as string, { sha256: flags.has('--sha256') });
        const line = `${e.type === 'dir' ? `${args[0]}/` : args[0]}  ${e.type}  ${formatBytes(e.size)} (${e.size} bytes)  modified ${formatTime(e.mtime)}`;
        this.out(sha256 ? `${line}  sha256 ${sha256}` : line);
        if (usage) this.out(usageLine(usage));
        return;
      }
      case 'RDLOG': {
        const { args, flags } = parseArgs(rest, ['--json']);
        need(args, 0, 0, 'RDLOG [--json]');
        const { events } = await client.readLog();
        for (const e of events) this.out(flags.has('--json') ? JSON.stringify(e) : renderEvent(e));
        return;
      }
      case 'CLRLOG': {
        need(rest, 0, 0, 'CLRLOG');
        const archive = await client.clearLog();
        return void this.out(`Log cleared (archived as ${archive})`);
      }
    }
  }

  private async reconnect(): Promise<void> {
    if (!this.interactive) throw new Error('CONN needs a terminal (LOGIN or SIGNUP is asked interactively)');
    this.close();
    await this.client?.quit();
    await this.open();
    if (!(await this.authenticateInteractively())) throw new Error('Not logged in');
  }

  private async list(client: FerryClient, words: string[]): Promise<void> {
    const { args } = parseArgs(words, []);
    need(args, 0, 1, 'LIST [dir]');
    this.out('Requesting files...\n');
    const { entries, count, bytes, usage } = await client.list(args[0] ?? '');
    const rows = entries
      .slice()
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((e) => [e.type === 'dir' ? `${e.name}/` : e.name, e.type === 'dir' ? '<dir>' : `${formatBytes(e.size)} (${e.size})`, formatTime(e.mtime)] as const);
    const w0 = Math.max(4, ...rows.map((r) => r[0].length));
    const w1 = Math.max(4, ...rows.map((r) => r[1].length));
    for (const [name, size, time] of rows) this.out(`${name.padEnd(w0)}  ${size.padStart(w1)}  ${time}`);
    this.out(`Total directory size: ${bytes} bytes (${formatBytes(bytes)}) in ${count} ${count === 1 ? 'entry' : 'entries'}`);
    if (usage) this.out(usageLine(usage));
  }

  private report(
    verb: 'Sent' | 'Received',
    name: string,
    r: { size: number; sha256: string; durationMs: number; resumedFrom: number; wireBytes: number; encoding: string | null },
  ): void {
    this.out(`${verb} file: ${name}${r.resumedFrom ? ` (resumed at ${formatBytes(r.resumedFrom)})` : ''}`);
    this.out(`Time elapsed: ${formatSeconds(r.durationMs)}`);
    this.out(`File size: ${formatBytes(r.size)} (${r.size} bytes)`);
    if (r.encoding) {
      const moved = r.size - r.resumedFrom;
      const share = moved > 0 ? Math.round((r.wireBytes / moved) * 100) : 100;
      this.out(`On the wire: ${formatBytes(r.wireBytes)} (${r.wireBytes} bytes, ${share}% of the file bytes sent, ${r.encoding})`);
    }
    this.out(`Rate: ${formatRate(r.size - r.resumedFrom, r.durationMs)}`);
    this.out(`sha256 verified: ${r.sha256}`);
  }

  private async upload(client: FerryClient, words: string[]): Promise<void> {
    const { args, flags } = parseArgs(words, ['-r', '-n', '--resume']);
    need(args, 1, 2, 'UPLD path [remote] [-r] [-n] [--resume]');
    const local = args[0] as string;
    const info = await stat(local).catch(() => {
      throw new Error(`Cannot upload '${local}': no such local file`);
    });
    const remoteArg = args[1] ?? '';
    const overwrite = !flags.has('-n');
    const resume = flags.has('--resume') ? true : undefined;
    if (info.isDirectory()) {
      if (!flags.has('-r')) throw new Error(`'${local}' is a directory; use UPLD -r to upload it whole`);
      const base = remoteArg === '' || remoteArg.endsWith('/') ? remoteJoin(remoteArg, basename(resolve(local))) : remoteArg;
      return this.uploadTree(client, local, base, overwrite);
    }
    const remote = remoteArg === '' || remoteArg.endsWith('/') ? remoteJoin(remoteArg, basename(local)) : remoteArg;
    this.out(`Uploading file: ${local}...`);
    const bar = progressBar(basename(local), this.interactive);
    try {
      const r = await client.upload(local, remote, { overwrite, parents: true, ...(resume ? { resume } : {}), onProgress: (p) => bar.update(p) });
      bar.stop();
      this.report('Sent', remote, r);
    } finally {
      bar.stop();
    }
  }

  private async uploadTree(client: FerryClient, localRoot: string, remoteRoot: string, overwrite: boolean): Promise<void> {
    const files: Array<{ local: string; remote: string; size: number }> = [];
    const dirs: string[] = [remoteRoot];
    const walk = async (dir: string, remote: string): Promise<void> => {
      for (const d of await readdir(dir, { withFileTypes: true })) {
        const l = join(dir, d.name);
        const r = remoteJoin(remote, d.name);
        if (d.isDirectory()) {
          dirs.push(r);
          await walk(l, r);
        } else if (d.isFile()) {
          files.push({ local: l, remote: r, size: (await stat(l)).size });
        }
      }
    };
    await walk(localRoot, remoteRoot);
    const total = files.reduce((n, f) => n + f.size, 0);
    this.out(`Uploading ${files.length} files (${formatBytes(total)}) from ${localRoot} to ${remoteRoot || '.'}...`);
    const started = Date.now();
    for (const d of dirs) await client.mkdir(d, true);
    let done = 0;
    const bar = progressBar(basename(resolve(localRoot)), this.interactive);
    try {
      await pool(files, 8, async (f) => {
        await client.upload(f.local, f.remote, { overwrite, parents: true });
        done += f.size;
        bar.update({ done, total });
      });
    } finally {
      bar.stop();
    }
    const ms = Date.now() - started;
    this.out(`Sent ${files.length} files to ${remoteRoot || '.'}`);
    this.out(`Time elapsed: ${formatSeconds(ms)}`);
    this.out(`Total size: ${formatBytes(total)} (${total} bytes), rate ${formatRate(total, ms)}, every file sha256 verified`);
  }

  private async download(client: FerryClient, words: string[]): Promise<void> {
    const { args, flags } = parseArgs(words, ['-r', '-n']);
    need(args, 1, 2, 'DWLD path [local] [-r] [-n]');
    const remote = args[0] as string;
    const overwrite = !flags.has('-n');
    const entry = await client.stat(remote);
    const localArg = args[1];
    const localInfo = localArg ? await stat(localArg).catch(() => null) : null;
    const name = posix.basename(remote.replace(/\/+$/, '')) || 'download';
    const local = localArg === undefined ? name : localInfo?.isDirectory() ? join(localArg, name) : localArg;
    if (entry.type === 'dir') {
      if (!flags.has('-r')) throw new Error(`'${remote}' is a directory; use DWLD -r to download it whole`);
      return this.downloadTree(client, remote, local, overwrite);
    }
    this.out(`Downloading file: ${remote}...`);
    const bar = progressBar(name, this.interactive);
    try {
      const r = await client.download(remote, local, { overwrite, onProgress: (p) => bar.update(p) });
      bar.stop();
      this.report('Received', local, r);
    } finally {
      bar.stop();
    }
  }

  private async downloadTree(client: FerryClient, remoteRoot: string, localRoot: string, overwrite: boolean): Promise<void> {
    const files: Array<{ remote: string; local: string; size: number }> = [];
    const walk = async (remote: string, local: string): Promise<void> => {
      await mkdir(local, { recursive: true });
      const { entries } = await client.list(remote);
      for (const e of entries) {
        const r = remoteJoin(remote, e.name);
        const l = join(local, e.name);
        if (e.type === 'dir') await walk(r, l);
        else files.push({ remote: r, local: l, size: e.size });
      }
    };
    await walk(remoteRoot, localRoot);
    const total = files.reduce((n, f) => n + f.size, 0);
    this.out(`Downloading ${files.length} files (${formatBytes(total)}) from ${remoteRoot} to ${localRoot}...`);
    const started = Date.now();
    let done = 0;
    const bar = progressBar(basename(localRoot), this.interactive);
    try {
      await pool(files, 8, async (f) => {
        await client.download(f.remote, f.local, { overwrite });
        done += f.size;
        bar.update({ done, total });
      });
    } finally {
      bar.stop();
    }
    const ms = Date.now() - started;
    this.out(`Received ${files.length} files into ${localRoot}`);
    this.out(`Time elapsed: ${formatSeconds(ms)}`);
    this.out(`Total size: ${formatBytes(total)} (${total} bytes), rate ${formatRate(total, ms)}, every file sha256 verified`);
  }
}

/** Runs `work` over items with at most `limit` at once; the first failure stops new starts and is thrown. */
async function pool<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let failure: { err: unknown } | null = null;
  await pMap(
    items,
    async (item) => {
      if (failure !== null) return;
      try {
        await work(item);
      } catch (err) {
        failure ??= { err };
      }
    },
    { concurrency: limit },
  );
  if (failure !== null) throw (failure as { err: unknown }).err;
}

export type { Entry };

/**
 * `ferry connect [host[:port]]`. In a terminal: the original interactive flow. Otherwise: log in with
 * --user and FERRY_PASSWORD, run one command per line from stdin, stop at the first failure.
 */
export async function runConnect(target: string | undefined, options: ConnectCliOptions): Promise<void> {
  const interactive = process.stdin.isTTY === true;
  const out = (line: string) => void process.stdout.write(line + '\n');
  const ca = readCaOption(options);
  if (options.insecure) process.stderr.write('warning: --insecure: plain TCP; passwords and files cross the network unencrypted\n');
  if (!interactive) return runScripted(target, options, out, ca);

  const prompt = new Prompt();
  try {
    out('\nWelcome to ferry, the file transfer client.\n');
    out(helpText());
    out('');
    let address = target;
    while (!address) {
      const answer = await prompt.ask('Enter server address (host[:port]): ');
      if (answer === null) return;
      address = answer.trim();
    }
    const shell = new Shell(parseAddress(address), options, prompt, out, ca);
    await shell.open();
    if (!(await shell.authenticateInteractively())) {
      await shell.client?.quit();
      throw new Error('Not logged in');
    }
    try {
      for (;;) {
        const line = await prompt.ask('\nEnter a command: ');
        if (line === null) break;
        try {
          if ((await shell.run(line)) === 'quit') break;
        } catch (err) {
          const message = err instanceof Error ? err.message : String(err);
          out(`Error: ${message}`);
          if (err instanceof FerryError && err.fatal) out('The connection was closed; use CONN to connect again.');
        }
      }
    } finally {
      shell.close();
      await shell.client?.quit();
    }
  } finally {
    prompt.close();
  }
}

/** The CA certificates of `--ca FILE`, else of `FERRY_CA`; undefined when neither is set (the built-in ones). */
function readCaOption(options: ConnectCliOptions): string[] | undefined {
  if (options.ca !== undefined) {
    // The argument parser reads a path of digits as a number: the path is what was typed.
    const file = typeof options.ca === 'boolean' ? '' : String(options.ca);
    if (file === '') throw new Error('--ca needs a file: the PEM certificates of the certificate authorities to trust');
    if (options.insecure) throw new Error('--ca needs TLS: leave out --insecure');
    return readCaFile(file, '--ca');
  }
  const fromEnv = process.env['FERRY_CA'];
  return fromEnv && !options.insecure ? readCaFile(fromEnv, 'FERRY_CA') : undefined;
}

async function runScripted(target: string | undefined, options: ConnectCliOptions, out: (line: string) => void, ca: string[] | undefined): Promise<void> {
  if (!target) throw new Error('Not a terminal: give the server address (ferry connect HOST[:PORT])');
  const shell = new Shell(parseAddress(target), options, null, out, ca);
  await shell.open();
  try {
    await shell.authenticateFromEnvironment();
    const lines = createInterface({ input: process.stdin, terminal: false });
    let lineNumber = 0;
    for await (const raw of lines) {
      lineNumber++;
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      out(`> ${line}`);
      try {
        if ((await shell.run(line)) === 'quit') break;
      } catch (err) {
        lines.close();
        const message = err instanceof Error ? err.message : String(err);
        throw new Error(`line ${lineNumber} (${line.split(/\s+/)[0]}): ${message}`);
      }
    }
  } finally {
    shell.close();
    await shell.client?.quit();
  }
}
