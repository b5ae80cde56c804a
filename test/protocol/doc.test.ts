// docs/protocol.md describes the wire to people writing other clients: its message tables (6.1, 6.2) and its
// error table (7) must say what the code does. This test reads them and compares them with the code's tables.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { ERROR_CODES } from '../../src/core/errors.ts';
import { CLIENT_MESSAGES, SERVER_MESSAGES } from '../../src/protocol/messages.ts';
import { ROOT } from '../e2e/harness.ts';

const DOC = readFileSync(join(ROOT, 'docs', 'protocol.md'), 'utf8');

/** The text of a section, from its heading to the next heading of the same or a higher level. */
function section(heading: string): string {
  const start = DOC.indexOf(`${heading}`);
  assert.ok(start >= 0, `docs/protocol.md has a section '${heading}'`);
  const level = /^#+/.exec(heading)?.[0].length ?? 2;
  const rest = DOC.slice(start + heading.length);
  const end = rest.search(new RegExp(`\\n#{1,${level}} `));
  return end < 0 ? rest : rest.slice(0, end);
}

/** The body rows of the first table in `text`: the `code`-quoted word of the first cell, and the other cells. */
function rows(text: string): Array<[string, string[]]> {
  const lines = text.split('\n');
  const first = lines.findIndex((l) => l.startsWith('|'));
  const table = lines.slice(first + 2); // below the header and its |---| line
  const end = table.findIndex((l) => !l.startsWith('|'));
  return (end < 0 ? table : table.slice(0, end))
    .map((line) => /^\|\s*`([a-z_0-9]+)`\s*\|(.*)\|\s*$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => [m[1] as string, (m[2] as string).split('|').map((c) => c.trim())]);
}

/** A message table's field cell as the code's spec: `` `v` uint, `mtime`? uint `` -> { v: 'uint', mtime: 'uint?' }. */
function fields(cell: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of cell.matchAll(/`(\w+)`(\?)?\s+(\w+)/g)) out[m[1] as string] = `${m[3]}${m[2] ?? ''}`;
  return out;
}

const t = suite('docs/protocol.md says what the code does');

t('6.1: every client message, with its fields and their types', () => {
  const doc = Object.fromEntries(rows(section('### 6.1')).map(([type, cells]) => [type, fields(cells[0] ?? '')]));
  assert.equal(doc, JSON.parse(JSON.stringify(CLIENT_MESSAGES)));
});

t('6.2: every server message, with its fields and their types', () => {
  const doc = Object.fromEntries(rows(section('### 6.2')).map(([type, cells]) => [type, fields(cells[0] ?? '')]));
  assert.equal(doc, JSON.parse(JSON.stringify(SERVER_MESSAGES)));
});

t('7: every error code, whether it is fatal and whether it is retryable', () => {
  const yes = (cell: string | undefined) => {
    const word = (cell ?? '').replace(/\*/g, '');
    assert.ok(word === 'yes' || word === 'no', `a yes/no cell, not '${cell}'`);
    return word === 'yes';
  };
  const doc = Object.fromEntries(rows(section('## 7.')).map(([code, cells]) => [code, { fatal: yes(cells[0]), retryable: yes(cells[1]) }]));
  const code = Object.fromEntries(Object.entries(ERROR_CODES).map(([c, e]) => [c, { fatal: e.fatal, retryable: e.retryable }]));
  assert.equal(doc, code);
});

t('8: every flag of ferry serve has a row', async () => {
  const { buildCli } = await import('../../src/cli/main.ts');
  const serve = buildCli().commands.find((c) => c.name === 'serve');
  const flags = (serve?.options ?? []).map((o) => o.rawName.split(' ')[0]).sort();
  const doc = [...section('## 8.').matchAll(/^\|\s*`(--[a-z0-9-]+)/gm)].map((m) => m[1]).sort();
  assert.equal(doc, flags);
  assert.is(flags.length, 19);
});

t.run();
