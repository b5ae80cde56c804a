import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { escapeText, quote, word } from '../../src/core/text.ts';

const t = suite('core/text: one quoting function');

t('newlines, terminal escapes, C1 controls, bidi overrides and lone surrogates are escaped; the backslash too', () => {
  assert.is(escapeText('a\nb\rc\td'), 'a\\nb\\rc\\td');
  assert.is(escapeText('\x1b[2J\x00\x7f\x85'), '\\u001b[2J\\u0000\\u007f\\u0085');
  assert.is(escapeText('x\u202ey\u2066z\u2028'), 'x\\u202ey\\u2066z\\u2028');
  assert.is(escapeText('lone \ud800 surrogate'), 'lone \\ud800 surrogate');
  assert.is(escapeText('pair \ud83d\ude00 kept'), 'pair \ud83d\ude00 kept');
  assert.is(escapeText('back\\slash'), 'back\\\\slash');
  assert.is(escapeText('café ünïcode'), 'café ünïcode');
});

t('a cut happens before escaping, on whole characters, and is marked', () => {
  assert.is(escapeText('x'.repeat(10), 4), 'xxxx…');
  assert.is(escapeText('\n'.repeat(10), 2), '\\n\\n…');
  assert.is(escapeText('\ud83d\ude00'.repeat(3), 2), '\ud83d\ude00\ud83d\ude00…');
  assert.is(escapeText('short', 10), 'short');
});

t('quote: single quotes, the quote escaped, 100 characters by default', () => {
  assert.is(quote("it's\n"), "'it\\'s\\n'");
  assert.ok(quote('z'.repeat(500)).endsWith("…'"));
  assert.is(quote('z'.repeat(500)).length, 103);
});

t('word: bare when it is one plain word, quoted otherwise', () => {
  assert.is(word('Trex_007'), 'Trex_007');
  assert.is(word('a.b@c+d-e'), 'a.b@c+d-e');
  assert.is(word('two words'), "'two words'");
  assert.is(word('x\n2026-01-01 forged'), "'x\\n2026-01-01 forged'");
  assert.is(word(''), "''");
});

t('one line whatever the input: no raw control character survives', () => {
  for (let c = 0; c < 0x100; c++) {
    const out = escapeText(`a${String.fromCharCode(c)}b`);
    assert.not.ok(/[\u0000-\u001f\u007f-\u009f]/.test(out), `U+${c.toString(16)}: ${JSON.stringify(out)}`);
  }
});

t.run();
