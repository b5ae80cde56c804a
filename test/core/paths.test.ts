import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { joinVirtual, parseVirtualPath, quotePath } from '../../src/core/paths.ts';

function refused(input: unknown, reason: RegExp): void {
  try {
    parseVirtualPath(input);
  } catch (err) {
    assert.instance(err, FerryError);
    assert.is((err as FerryError).code, 'invalid_path');
    assert.match((err as FerryError).message, reason);
    return;
  }
  assert.unreachable(`${JSON.stringify(input)} was accepted`);
}

const refusals = suite('parseVirtualPath refuses');

refusals('a parent segment at the start, middle and end', () => {
  refused('..', /'\.\.'/);
  refused('../etc', /'\.\.'/);
  refused('a/../b', /'\.\.'/);
  refused('a/b/..', /'\.\.'/);
  refused('a/../../b', /'\.\.'/);
  refused('./..', /'\.\.'/);
});

refusals('absolute paths and drive forms', () => {
  refused('/etc/passwd', /absolute/);
  refused('/', /absolute/);
  refused('C:\\x', /backslash|drive/);
  refused('C:', /drive/);
  refused('c:/x', /drive/);
});

refusals('backslashes', () => {
  refused('a\\b', /backslash/);
  refused('\\\\server\\share', /backslash/);
});

refusals('NUL and every other control character', () => {
  refused('a\u0000b', /control/);
  for (let c = 1; c < 0x20; c++) refused(`a${String.fromCharCode(c)}b`, /control/);
  refused('a\u007fb', /control/);
});

refusals('the control character is escaped in the message', () => {
  try {
    parseVirtualPath('a\u0000b\nc');
    assert.unreachable();
  } catch (err) {
    assert.not.match((err as Error).message, /[\u0000\n]/);
    // One quoting function for every message (core/text.ts): a newline shows as \n, other controls as \uXXXX.
    assert.match((err as Error).message, /a\\u0000b\\nc/);
  }
});

refusals('a lone surrogate', () => {
  refused('a\ud800b', /surrogate/);
});

refusals('a segment longer than 255 UTF-8 bytes', () => {
  refused('x'.repeat(256), /255 bytes/);
  refused(`ok/${'é'.repeat(128)}`, /255 bytes/); // 256 bytes in 128 characters
});

refusals('a path longer than 4096 bytes', () => {
  const path = Array.from({ length: 41 }, () => 'y'.repeat(99)).join('/'); // 41*99 + 40 = 4099
  assert.is(Buffer.byteLength(path), 4099);
  refused(path, /4096 bytes/);
  refused(`${'a/'.repeat(2048)}b`, /4096 bytes/); // 4097 bytes
});

refusals('segments made only of dots or spaces', () => {
  refused('...', /dots or spaces/);
  refused('a/ /b', /dots or spaces/);
  refused('a/. ./b', /dots or spaces/);
});

refusals('look-alikes of slash, backslash and dot-dot', () => {
  refused('a\uff0fb', /looks like/); // FULLWIDTH SOLIDUS
  refused('a\uff3cb', /looks like/); // FULLWIDTH REVERSE SOLIDUS
  refused('\u2024\u2024', /looks like/); // ONE DOT LEADER twice
  refused('\u2025', /looks like/); // TWO DOT LEADER
  refused('a/\uff0e\uff0e/b', /looks like/); // FULLWIDTH FULL STOP twice
  refused('\u2024', /looks like/); // a lone look-alike dot
});

refusals('non-string input', () => {
  refused(undefined, /not a string/);
  refused(42, /not a string/);
  refused(['a'], /not a string/);
  refused(null, /not a string/);
});

refusals.run();

const accepted = suite('parseVirtualPath accepts');

accepted('empty and dot segments are dropped', () => {
  assert.equal(parseVirtualPath('a//b/./c/'), ['a', 'b', 'c']);
  assert.equal(parseVirtualPath('./a'), ['a']);
});

accepted('the empty path and "." are the home', () => {
  assert.equal(parseVirtualPath(''), []);
  assert.equal(parseVirtualPath('.'), []);
  assert.equal(parseVirtualPath('./'), []);
});

accepted('ordinary names with dots, spaces and unicode', () => {
  assert.equal(parseVirtualPath('my file.txt'), ['my file.txt']);
  assert.equal(parseVirtualPath('.hidden/a..b/v1.2'), ['.hidden', 'a..b', 'v1.2']);
  assert.equal(parseVirtualPath('日本/ünïcode 🚀'), ['日本', 'ünïcode 🚀']);
  assert.equal(parseVirtualPath('a/C:'), ['a', 'C:']);
});

accepted('a 255-byte segment and a 4096-byte path', () => {
  assert.equal(parseVirtualPath('x'.repeat(255)), ['x'.repeat(255)]);
  const path = `${'a/'.repeat(2047)}bc`;
  assert.is(Buffer.byteLength(path), 4096);
  assert.is(parseVirtualPath(path).length, 2048);
});

accepted('NFD and NFC spellings parse to the same NFC segments', () => {
  const nfc = 'caf\u00e9/\u00c5ngstr\u00f6m';
  const nfd = nfc.normalize('NFD');
  assert.is.not(nfd, nfc);
  assert.equal(parseVirtualPath(nfd), parseVirtualPath(nfc));
  assert.equal(parseVirtualPath(nfd), ['caf\u00e9', '\u00c5ngstr\u00f6m']);
});

accepted('compatibility characters that fold harmlessly are kept as sent', () => {
  assert.equal(parseVirtualPath('\uff21\uff22'), ['\uff21\uff22']); // fullwidth AB
  assert.equal(parseVirtualPath('x\u00b2'), ['x\u00b2']);
});

accepted.run();

const display = suite('joinVirtual and quotePath');

display('joinVirtual gives the display form and round-trips', () => {
  assert.is(joinVirtual(['a', 'b', 'c']), 'a/b/c');
  assert.is(joinVirtual([]), '');
  for (const path of ['a//b/./c/', '', 'x/y']) {
    const segments = parseVirtualPath(path);
    assert.equal(parseVirtualPath(joinVirtual(segments)), segments);
  }
});

display('quotePath truncates long paths', () => {
  const shown = quotePath('z'.repeat(500));
  assert.ok(shown.length < 110);
  assert.ok(shown.endsWith("…'"));
});

display.run();
