import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import process from 'node:process';
import { connect, probeIdentity, trustNotice, type FerryClient } from '../client/mod.ts';
import { KnownHosts, type KnownHost } from '../client/known-hosts.ts';
import { Journal } from '../batch/journal.ts';
import { formatProblem, MAX_CONCURRENCY, parseManifest, type Problem } from '../batch/manifest.ts';
import { jsonReporter, plainReporter, terminalReporter, type Reporter } from '../batch/report.ts';
import { EXIT, runBatch } from '../batch/runner.ts';
import { clientEncodings } from './bundled-plugins.ts';
import { UsageError } from './errors.ts';

export interface BatchCliOptions {
  /** A path; `true` when given without one (cac reads `--manifest -` that way). */
  manifest?: string | boolean;
  dryRun?: boolean;
  json?: boolean;
  journal?: string;
  concurrency?: string | number;
  /** False with --no-bundles. */
  bundles?: boolean;
}

const STDIN = '-';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * `ferry batch <manifest>`: validates the manifest (every problem at once, exit 2), connects (exit 3 if
 * it cannot), runs it (exit 1 if anything failed, 130 on Ctrl-C) and sets `process.exitCode` itself.
 */
export async function runBatchCommand(positional: string | undefined, options: BatchCliOptions, rawArgs: readonly string[] = []): Promise<void> {
  // The argument parser drops a lone '-': look for it in the raw arguments.
  const dash = rawArgs.slice(2).includes(STDIN);
  const named = typeof options.manifest === 'string' ? options.manifest : options.manifest === true && dash ? STDIN : undefined;
  if (options.manifest === true && !dash) throw new UsageError('--manifest needs a path (or - for stdin)');
  const given = [positional, named, dash && named === undefined ? STDIN : undefined].filter((s): s is string => s !== undefined);
  if (new Set(given).size > 1) throw new UsageError(`Give the manifest once, not ${given.map((g) => `'${g}'`).join(' and ')}`);
  const source = given[0];
  if (source === undefined || source === '') throw new UsageError('Usage: ferry batch <manifest.yaml> (or - / --manifest - for stdin)');
  let concurrency: number | null = null;
  if (options.concurrency !== undefined) {
    concurrency = Number(options.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
      throw new UsageError(`--concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, not '${options.concurrency}'`);
    }
  }
  const json = options.json === true;
  const out = (text: string) => void process.stdout.write(text);
  const err = (text: string) => void process.stderr.write(text);
  const fromStdin = source === STDIN;
  const file = fromStdin ? '<stdin>' : source;

  const invalid = (problems: Problem[]) => {
    for (const p of problems) err(`${formatProblem(p)}\n`);
    err(`ferry batch: ${problems.length} problem${problems.length === 1 ? '' : 's'} in ${file}; nothing was transferred\n`);
    if (json) out(`${JSON.stringify({ event: 'invalid', problems })}\n`);
    process.exitCode = EXIT.invalid;
  };

  let text: string;
  try {
    text = fromStdin ? await readStdin() : await readFile(source, 'utf8');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message;
    return invalid([{ file, line: 1, column: 1, field: '(file)', message: `Cannot read the manifest: ${why}` }]);
  }

  const baseDir = fromStdin ? process.cwd() : dirname(resolve(source));
  const parsed = parseManifest(text, { file, baseDir, env: process.env });
  if (!parsed.ok) {
    for (const w of parsed.warnings) err(`warning: ${formatProblem(w)}\n`);
    return invalid(parsed.problems);
  }
  const manifest = parsed.manifest;

  // Never prompt: a server that is neither pinned nor already known, nor verified by a certificate authority, is a
  // manifest problem.
  const knownHosts = new KnownHosts();
  const ca = manifest.ca ? { ca: manifest.ca.certificates } : {};
  if (!manifest.fingerprint && !manifest.insecure) {
    const { host, port } = manifest.server;
    let known: KnownHost | null = null;
    try {
      known = await knownHosts.lookup(host, port);
    } catch (e) {
      err(`warning: cannot read ${knownHosts.file}: ${(e as Error).message}\n`);
    }
    if (!known) {
      // Only a look at the certificate (nothing of the protocol is sent). A server that cannot be reached is left to
      // the connection below, which reports it (exit 3).
      const presented = await probeIdentity({ host, port, ...ca }).catch(() => null);
      if (presented && !presented.ca.valid) {
        return invalid([
          {
            file,
            ...manifest.serverAt,
            field: 'fingerprint',
            message:
              `is required: ${host}:${port} is not in ${knownHosts.file}, and no certificate authority verifies its certificate: ` +
              `${presented.ca.reason}; ask its operator for the fingerprint that \`ferry serve\` prints and add fingerprint: SHA256:..., ` +
              `or give the server a certificate from a CA (ferry serve --cert; ca: FILE for a private CA)`,
          },
        ]);
      }
    }
  }

  const journalPath = options.journal ? resolve(options.journal) : fromStdin ? null : `${resolve(source)}.journal`;
  let journal: Journal | null = null;
  if (journalPath) {
    try {
      journal = options.dryRun ? Journal.peek(journalPath) : Journal.open(journalPath);
    } catch (e) {
      err(`ferry batch: ${(e as Error).message}\n`);
      if (json) out(`${JSON.stringify({ event: 'error', code: 'busy', message: (e as Error).message, attempts: 1, retried: false })}\n`);
      process.exitCode = EXIT.failed;
      return;
    }
  }

  const reporter: Reporter = json ? jsonReporter(out) : process.stderr.isTTY && !options.dryRun ? terminalReporter(out) : plainReporter(out, err);

  const controller = new AbortController();
  let interrupts = 0;
  const onSigint = () => {
    interrupts++;
    if (interrupts > 1) process.exit(EXIT.interrupted);
    if (!json) err('\ninterrupted: no new transfers start; finishing the journal (Ctrl-C again to quit at once)\n');
    controller.abort();
  };
  process.on('SIGINT', onSigint);

  const openConnection = async (): Promise<FerryClient> => {
    const client = await connect({
      host: manifest.server.host,
      port: manifest.server.port,
      knownHosts,
      encodings: clientEncodings(),
      ...(manifest.insecure ? { insecure: true } : {}),
      ...(manifest.fingerprint ? { fingerprint: manifest.fingerprint } : {}),
      ...ca,
    });
    const notice = trustNotice(client.trust);
    if (notice) err(`${notice}\n`);
    try {
      await client.login(manifest.user, manifest.password);
    } catch (e) {
      client.destroy();
      throw e;
    }
    return client;
  };

  let complete = false;
  try {
    const summary = await runBatch({
      manifest,
      dryRun: options.dryRun === true,
      journal,
      concurrency: concurrency ?? manifest.concurrency,
      reporter,
      signal: controller.signal,
      connect: openConnection,
      bundles: options.bundles !== false,
    });
    complete = summary.exitCode === EXIT.ok && !summary.dryRun;
    process.exitCode = summary.exitCode;
  } finally {
    process.off('SIGINT', onSigint);
    journal?.close(complete);
    if (journal?.writeError) err(`warning: the journal '${journal.path}' could not be written: ${journal.writeError.message}\n`);
  }
}
