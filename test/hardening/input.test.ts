// Hostile input, property-based (fast-check): the frame decoder, the message parser, virtual paths, and the
// config and manifest parsers. Each property runs a few hundred cases so that the file stays in seconds;
// FERRY_FC_RUNS raises that for a longer search (the stress script does).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import fc from 'fast-check';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseManifest, formatProblem } from '../../src/batch/manifest.ts';
import { readServeConfig } from '../../src/cli/config.ts';
import { FerryError } from '../../src/core/errors.ts';
import { CLIENT_MESSAGES, FrameDecoder, FrameKind, PREAMBLE, encodeData, encodeHeader, encodeMessage, parseClientMessage } from '../../src/protocol/mod.ts';
import { joinVirtual, parseVirtualPath } from '../../src/core/paths.ts';
import { S3Home } from '../../src/storage/s3/home.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import { hostilePath, PIECES } from './hostile-paths.ts';

const RUNS = Number(process.env.FERRY_FC_RUNS ?? 200);
const LIMITS = { maxMessage: 1024, maxData: 4096 };

/** Runs `fn` while recording the largest Buffer.allocUnsafe / Buffer.alloc request. */
function measuringAllocations<T>(fn: () => T): { value: T; largest: number } {
  const { allocUnsafe, alloc } = Buffer;
  let largest = 0;
  Buffer.allocUnsafe = ((size: number) => {
    largest = Math.max(largest, size);
    return allocUnsafe.call(Buffer, size);
  }) as typeof Buffer.allocUnsafe;
  Buffer.alloc = ((size: number, ...rest: unknown[]) => {
    largest = Math.max(largest, size);
    return (alloc as (...a: unknown[]) => Buffer).call(Buffer, size, ...rest);
  }) as typeof Buffer.alloc;
  try {
    return { value: fn(), largest };
  } finally {
    Buffer.allocUnsafe = allocUnsafe;
    Buffer.alloc = alloc;
  }
}

/** Splits `bytes` at the given (sorted, deduplicated) cut points. */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    parts.push(bytes.subarray(at, p));
    at = p;
  }
  parts.push(bytes.subarray(at));
  return parts;
}

type Frame = { kind: 'msg'; id: number; body: object } | { kind: 'data'; id: number; bytes: Buffer };

const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  fc.record({
    kind: fc.constant('msg' as const),
    id: fc.nat(),
    body: fc.record({ t: fc.constantFrom('ping', 'list', 'x'), s: fc.string({ maxLength: 200 }) }),
  }),
  fc.record({
    kind: fc.constant('data' as const),
    id: fc.integer({ min: 1, max: 0xffff_ffff }),
    bytes: fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
  }),
);

function encodeFrame(f: Frame): Buffer {
  return f.kind === 'msg' ? encodeMessage(f.id, f.body) : Buffer.concat(encodeData(f.id, f.bytes));
}

// ---- frame decoder -----------------------------------------------------------------------------------

const decoder = suite('hardening: frame decoder');

decoder('random byte streams in random pieces: only FerryError, never above the limits, failure is sticky', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.uint8Array({ maxLength: 3000 }),
      fc.array(fc.nat(), { maxLength: 20 }),
      fc.boolean(),
      (preamble, raw, cuts, prefixPreamble) => {
        const bytes = prefixPreamble ? Buffer.concat([Buffer.from(PREAMBLE), Buffer.from(raw)]) : Buffer.from(raw);
        let delivered = 0;
        const d = new FrameDecoder(
          {
            onMessage: (_id, body) => {
              assert.ok(body.length <= LIMITS.maxMessage);
              delivered += body.length;
            },
            onData: (_id, chunk) => {
              assert.ok(chunk.length <= LIMITS.maxData);
              delivered += chunk.length;
            },
          },
          { ...LIMITS },
          preamble,
        );
        const { largest } = measuringAllocations(() => {
          for (const part of split(bytes, cuts)) {
            try {
              d.push(part);
            } catch (err) {
              assert.instance(err, FerryError);
              assert.ok(d.failed === err, 'the failure is kept');
              // Once failed, it stays failed with the same error and ignores the rest.
              try {
                d.push(Buffer.from([1, 2, 3]));
                assert.unreachable('a failed decoder accepted more input');
              } catch (again) {
                assert.is(again, err);
              }
              return;
            }
          }
        });
        assert.ok(largest <= LIMITS.maxMessage, `allocated ${largest} bytes`);
        assert.ok(delivered <= bytes.length);
      },
    ),
    { numRuns: RUNS * 3 },
  );
});

decoder('valid frame streams split anywhere decode to exactly the frames sent', () => {
  fc.assert(
    fc.property(fc.array(frameArb, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
      const stream = Buffer.concat([Buffer.from(PREAMBLE), ...frames.map(encodeFrame)]);
      const got: Frame[] = [];
      let pending: Buffer[] = [];
      const d = new FrameDecoder(
        {
          onMessage: (id, body) => got.push({ kind: 'msg', id, body: JSON.parse(body.toString('utf8')) }),
          onData: (id, chunk, last) => {
            pending.push(Buffer.from(chunk));
            if (last) {
              got.push({ kind: 'data', id, bytes: Buffer.concat(pending) });
              pending = [];
            }
          },
        },
        { maxMessage: 64 * 1024, maxData: 4096 },
        true,
      );
      for (const part of split(stream, cuts)) d.push(part);
      assert.ok(d.atBoundary);
      assert.equal(got.length, frames.length);
      frames.forEach((f, i) => {
        const g = got[i] as Frame;
        assert.is(g.kind, f.kind);
        assert.is(g.id, f.id);
        if (f.kind === 'msg') assert.equal((g as typeof f).body, JSON.parse(JSON.stringify(f.body)));
        else assert.ok((g as typeof f).bytes.equals(f.bytes));
      });
    }),
    { numRuns: RUNS },
  );
});

decoder('lengths at and past every limit: at the limit is accepted, one past is refused from the header alone', () => {
  const lengths = (limit: number) => [0, 1, limit - 1, limit, limit + 1, limit * 2, 0x7fff_ffff, 0xffff_ffff];
  for (const [kind, limit] of [[FrameKind.MSG, LIMITS.maxMessage], [FrameKind.DATA, LIMITS.maxData]] as const) {
    for (const length of lengths(limit)) {
      const d = new FrameDecoder({ onMessage: () => {}, onData: () => {} }, { ...LIMITS }, false);
      const header = encodeHeader(kind, 5, length);
      const { value: error, largest } = measuringAllocations(() => {
        try {
          d.push(header); // the header only: nothing of the payload has arrived
          return null;
        } catch (err) {
          return err;
        }
      });
      if (length > limit) {
        assert.instance(error, FerryError, `kind ${kind} length ${length}`);
        assert.is((error as FerryError).code, 'frame_too_large');
        assert.is(largest, 0, `nothing allocated for a refused length ${length}`);
      } else if (kind === FrameKind.MSG && length === 0) {
        assert.is((error as FerryError).code, 'bad_message');
      } else {
        assert.is(error, null, `kind ${kind} length ${length} at or under the limit is accepted`);
        assert.ok(largest <= limit);
      }
    }
  }
  // Unknown kinds, and a DATA frame on id 0.
  for (const kind of [0, 3, 0x7f, 0xff]) {
    const d = new FrameDecoder({ onMessage: () => {}, onData: () => {} }, { ...LIMITS }, false);
    assert.throws(() => d.push(encodeHeader(kind as FrameKind, 1, 1)), (e: unknown) => e instanceof FerryError && e.code === 'bad_frame');
  }
  const d = new FrameDecoder({ onMessage: () => {}, onData: () => {} }, { ...LIMITS }, false);
  assert.throws(() => d.push(encodeHeader(FrameKind.DATA, 0, 1)), (e: unknown) => e instanceof FerryError && e.code === 'unexpected_message');
});

decoder('a sink that throws a non-FerryError is turned into a clean bad_message', () => {
  const d = new FrameDecoder({ onMessage: () => { throw new TypeError('boom'); }, onData: () => {} }, { ...LIMITS }, false);
  assert.throws(() => d.push(encodeMessage(1, { t: 'ping' })), (e: unknown) => e instanceof FerryError && e.code === 'bad_message');
});

// ---- message parser ----------------------------------------------------------------------------------

const messages = suite('hardening: message parser');

const ALLOWED = new Set(['bad_message', 'unknown_message']);

function checkParse(body: Buffer | string): void {
  try {
    const msg = parseClientMessage(body);
    // Whatever is accepted has a known type and only that type's fields, each of the declared kind.
    const spec = (CLIENT_MESSAGES as Record<string, Record<string, string>>)[msg.t];
    assert.ok(spec, `accepted an unknown type ${msg.t}`);
    for (const key of Object.keys(msg)) assert.ok(key === 't' || Object.hasOwn(spec, key), `accepted field ${key}`);
    for (const [key, type] of Object.entries(spec)) {
      const v = (msg as Record<string, unknown>)[key];
      if (v === undefined) continue;
      if (type.startsWith('uint')) assert.ok(Number.isSafeInteger(v) && (v as number) >= 0, `${key}=${String(v)}`);
      if (type.startsWith('str') && !type.startsWith('strs')) assert.type(v, 'string');
      if (type.startsWith('hex64')) assert.match(v as string, /^[0-9a-f]{64}$/);
    }
  } catch (err) {
    assert.instance(err, FerryError);
    assert.ok(ALLOWED.has((err as FerryError).code), (err as FerryError).code);
    assert.ok((err as Error).message.length < 300, 'error messages stay short');
  }
}

messages('random bytes and random JSON never escape as anything but bad_message / unknown_message', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => checkParse(Buffer.from(b))), { numRuns: RUNS });
  fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => checkParse(JSON.stringify(v) ?? 'null')), { numRuns: RUNS });
});

messages('messages built from the real types with mutated fields are validated field by field', () => {
  const types = Object.keys(CLIENT_MESSAGES);
  const fieldValue = fc.oneof(
    fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.array(fc.string(), { maxLength: 70 }),
    fc.constantFrom(-1, 2 ** 53, Number.MAX_SAFE_INTEGER, 1e308, 'a'.repeat(64), 'A'.repeat(64), '0'.repeat(63)),
    fc.jsonValue({ maxDepth: 2 }),
  );
  fc.assert(
    fc.property(
      fc.constantFrom(...types, '__proto__', 'constructor', 'toString', 'hasOwnProperty', ''),
      fc.dictionary(fc.constantFrom('path', 'size', 'offset', 'user', 'password', 'sha256', 'features', 'v', 'agent', 'from', 'to', '__proto__', 'constructor', 'extra'), fieldValue),
      (t, fields) => {
        checkParse(JSON.stringify({ t, ...fields }));
        // The literal "__proto__" key in JSON text is an own property after JSON.parse: refused, never merged.
        checkParse(`{"t":${JSON.stringify(t)},"__proto__":{"path":"x"}}`);
      },
    ),
    { numRuns: RUNS * 2 },
  );
  assert.equal(({} as Record<string, unknown>).path, undefined, 'Object.prototype was not polluted');
});

// ---- virtual paths -----------------------------------------------------------------------------------

const paths = suite('hardening: virtual paths');

const HOME = resolve('/srv/ferry/homes/alice');

function checkPath(input: string): void {
  let segments: string[];
  try {
    segments = parseVirtualPath(input);
  } catch (err) {
    assert.instance(err, FerryError);
    assert.is((err as FerryError).code, 'invalid_path');
    assert.ok((err as Error).message.length < 400, 'the message quotes at most 100 characters of the path');
    assert.not.match((err as Error).message, /[\u0000-\u001f]/, 'no raw control characters in the message');
    return;
  }
  for (const s of segments) {
    assert.ok(s !== '' && s !== '.' && s !== '..', `segment ${JSON.stringify(s)}`);
    assert.not.ok(/[/\\\u0000]/.test(s), `segment ${JSON.stringify(s)} has a separator or NUL`);
    assert.ok(Buffer.byteLength(s) <= 255);
    assert.is(s, s.normalize('NFC'));
  }
  const full = resolve(HOME, ...segments);
  assert.ok(full === HOME || full.startsWith(HOME + sep), `${JSON.stringify(input)} resolves to ${full}`);
  assert.equal(parseVirtualPath(joinVirtual(segments)), segments, 'parse(join(parse(p))) = parse(p)');
}

paths('adversarial combinations of pieces never resolve outside the home', () => {
  fc.assert(
    fc.property(hostilePath(), (path) => {
      checkPath(path);
      checkPath(path.replaceAll('\\', '/'));
    }),
    { numRuns: RUNS * 3 },
  );
});

paths('the object store: every key a parsed path gives is under <prefix>/homes/<user>/, one segment per key part', () => {
  const home = new S3Home(null as unknown as S3Client, 'bucket', 'pre/fix/', 'alice');
  const piece = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom(...PIECES));
  const check = (input: string) => {
    let segments: string[];
    try {
      segments = parseVirtualPath(input);
    } catch {
      return; // refused before any key is made (checkPath covers how)
    }
    for (const key of [home.key(segments), home.folder(segments)]) {
      assert.ok(key.startsWith('pre/fix/homes/alice/'), key);
      const rest = key.slice('pre/fix/homes/alice/'.length).replace(/\/$/, '');
      assert.equal(rest === '' ? [] : rest.split('/'), segments, `${JSON.stringify(input)} -> ${key}`);
    }
  };
  fc.assert(fc.property(hostilePath(), check), { numRuns: RUNS * 3 });
  fc.assert(fc.property(fc.array(piece, { maxLength: 10 }), (parts) => check(parts.join('/'))), { numRuns: RUNS * 3 });
});

paths('arbitrary unicode strings (full range, with separators mixed in) never resolve outside the home', () => {
  const piece = fc.oneof(fc.string({ unit: 'binary', maxLength: 12 }), fc.constantFrom(...PIECES));
  fc.assert(fc.property(fc.array(piece, { maxLength: 10 }), (parts) => checkPath(parts.join('/'))), { numRuns: RUNS * 3 });
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 5000 }), checkPath), { numRuns: RUNS });
});

paths('hand-picked: encoded forms are literal names, look-alikes and .. are refused, NFD = NFC, long names bounded', () => {
  assert.equal(parseVirtualPath('%2e%2e'), ['%2e%2e'], '%2e%2e is a literal name (never URL-decoded)');
  assert.equal(parseVirtualPath('%2e%2e/%2f'), ['%2e%2e', '%2f']);
  for (const bad of ['./C:', 'a/../C:', '..', 'a/..', 'a/../b', '../a', 'a/b/..', '/etc/passwd', 'a\\b', '..\\a', 'a\u0000b', 'C:x', '\uFF0E\uFF0E', '\u2024\u2024', 'a/\uFF0E\uFF0E/b', '\u2025', '...', '. .', 'a'.repeat(256), `${'a/'.repeat(2049)}a`, '\uD800']) {
    assert.throws(() => parseVirtualPath(bad), (e: unknown) => e instanceof FerryError && e.code === 'invalid_path', JSON.stringify(bad).slice(0, 60));
  }
  assert.equal(parseVirtualPath('e\u0301'), parseVirtualPath('\u00e9'), 'NFD and NFC name the same file');
  assert.equal(parseVirtualPath('\u212B'), ['\u00C5'], 'ANGSTROM SIGN becomes its NFC form');
  assert.equal(parseVirtualPath('a'.repeat(255)), ['a'.repeat(255)]);
  assert.throws(() => parseVirtualPath(123 as unknown as string), (e: unknown) => e instanceof FerryError && e.code === 'invalid_path');
});

// ---- config and manifest files -----------------------------------------------------------------------

const files = suite('hardening: config and manifest files');

const VALID_CONFIG = `host: 127.0.0.1\nport: 2121\ndata: ./d\nsignup: closed\nproxyProtocol:\n  - 10.0.0.0/8\n  - ::1\nplugins:\n  - quota\n  - name: compress\n    options: { level: 1 }\n`;
const VALID_MANIFEST = JSON.stringify({
  server: 'h:2121', fingerprint: `SHA256:${'A'.repeat(43)}`, user: 'u', password: 'p', concurrency: 4,
  ops: [{ put: './a.txt', to: 'r/' }, { get: 'x', to: './y', sha256: 'a'.repeat(64) }, { mkdir: 'd/' }, { rename: 'a', to: 'b' }, { delete: 't' }],
});
const VALID_MANIFEST_YAML = `server: h:2121\nuser: u\npassword: \${FERRY_PASSWORD}\nops:\n  - put: ./a/*.csv\n    to: r/\n    if_changed: true\n  - delete: t\n`;

/** Mutations: truncation, random bytes spliced in, random text. */
const mutated = (base: string) =>
  fc.oneof(
    fc.nat({ max: base.length }).map((n) => base.slice(0, n)),
    fc.tuple(fc.nat({ max: base.length }), fc.string({ unit: 'binary', maxLength: 8 })).map(([n, s]) => base.slice(0, n) + s + base.slice(n)),
    fc.tuple(fc.nat({ max: base.length }), fc.constantFrom(':', '-', '{', '[', '"', "'", '\t', '\n', '&a', '*a', '!!binary', '? ', '|', '>', '%YAML 1.1\n---\n', '\u0000', '${', '${X')).map(([n, s]) => base.slice(0, n) + s + base.slice(n)),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ''),
  );

let dir: string;
files.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-hardening-input-'));
});
files.after(() => rmSync(dir, { recursive: true, force: true }));

files('random and truncated config files: either a config or an Error whose every line is file:line: ...', async () => {
  const file = join(dir, 'ferry.config.yaml');
  await fc.assert(
    fc.asyncProperty(mutated(VALID_CONFIG), async (text) => {
      writeFileSync(file, text);
      try {
        await readServeConfig(file);
      } catch (err) {
        assert.ok(err instanceof Error && !(err instanceof TypeError) && !(err instanceof RangeError), String(err));
        for (const line of (err as Error).message.split('\n')) {
          assert.ok(line.startsWith(`${file}:`), `no location: ${JSON.stringify(line)}`);
          assert.match(line.slice(file.length), /^:(\d+|\?):/, `no line number: ${JSON.stringify(line)}`);
        }
      }
    }),
    { numRuns: RUNS },
  );
});

files('random and truncated manifests (JSON and YAML): a manifest or problems each of the form file:line:column: field: message', () => {
  fc.assert(
    fc.property(fc.oneof(mutated(VALID_MANIFEST), mutated(VALID_MANIFEST_YAML)), (text) => {
      const r = parseManifest(text, { file: 'm.yaml', baseDir: dir, env: { FERRY_PASSWORD: 'pw' } });
      if (r.ok) return;
      assert.ok(r.problems.length > 0);
      for (const p of r.problems) {
        const line = formatProblem(p);
        assert.not.ok(line.includes('\n'), `one line: ${JSON.stringify(line)}`);
        assert.match(line, /^m\.yaml:\d+:\d+: /, line);
        assert.ok(p.line >= 1 && p.column >= 1);
      }
    }),
    { numRuns: RUNS * 2 },
  );
});

decoder.run();
messages.run();
paths.run();
files.run();
