import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { FerryError } from '../../src/core/errors.ts';
import { burnPasswordCheck, hashPassword, validatePassword, verifyPassword } from '../../src/auth/password.ts';

// Read at call time by password.ts, so setting it here (after the hoisted imports) still applies.
process.env['FERRY_SCRYPT_N'] = '1024';

const hashing = suite('password hashing');

hashing('a hash verifies with the same password', async () => {
  const encoded = await hashPassword('correct horse battery');
  assert.match(encoded, /^scrypt\$1024\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
  assert.is(await verifyPassword('correct horse battery', encoded), true);
});

hashing('a wrong password does not verify', async () => {
  const encoded = await hashPassword('correct horse battery');
  assert.is(await verifyPassword('correct horse batterz', encoded), false);
  assert.is(await verifyPassword('', encoded), false);
});

hashing('the clear password does not appear in the hash', async () => {
  const encoded = await hashPassword('correct horse battery');
  assert.not.ok(encoded.includes('correct horse battery'));
  assert.not.ok(encoded.includes(Buffer.from('correct horse battery').toString('base64')));
});

hashing('two hashes of the same password differ (random salt) and both verify', async () => {
  const a = await hashPassword('same password');
  const b = await hashPassword('same password');
  assert.is.not(a, b);
  assert.is.not(a.split('$')[4], b.split('$')[4]);
  assert.is(await verifyPassword('same password', a), true);
  assert.is(await verifyPassword('same password', b), true);
});

hashing('verification reads the cost back from the hash, whatever FERRY_SCRYPT_N is now', async () => {
  const cheap = await hashPassword('some password');
  process.env['FERRY_SCRYPT_N'] = '2048';
  try {
    const dearer = await hashPassword('some password');
    assert.ok(dearer.startsWith('scrypt$2048$'));
    assert.is(await verifyPassword('some password', cheap), true);
    assert.is(await verifyPassword('some password', dearer), true);
  } finally {
    process.env['FERRY_SCRYPT_N'] = '1024';
  }
});

hashing('a malformed encoded hash gives false, never an exception', async () => {
  const good = await hashPassword('correct horse battery');
  const [, , , , salt, hash] = good.split('$');
  const garbage: unknown[] = [
    '',
    'garbage',
    'scrypt$$$$$',
    `bcrypt$1024$8$1$${salt}$${hash}`,
    `scrypt$1000$8$1$${salt}$${hash}`, // N not a power of two
    `scrypt$0$8$1$${salt}$${hash}`,
    `scrypt$1024$0$1$${salt}$${hash}`,
    `scrypt$1024$8$1$${salt}`,
    `scrypt$1024$8$1$${salt}$${hash}$extra`,
    `scrypt$1024$8$1$${salt}$not*base64`,
    `scrypt$1024$8$1$${salt}$AAAA`, // too short a key
    `scrypt$1073741824$8$1$${salt}$${hash}`, // absurd memory cost
    `scrypt$1048576$32$1$${salt}$${hash}`, // 4 GiB: refused, not attempted
    null,
    undefined,
    42,
  ];
  for (const encoded of garbage) {
    assert.is(await verifyPassword('correct horse battery', encoded as string), false, String(encoded));
  }
});

hashing('an unknown user costs a real scrypt run and never succeeds', async () => {
  process.env['FERRY_SCRYPT_N'] = String(2 ** 14);
  try {
    const encoded = await hashPassword('whatever password');
    let started = performance.now();
    await verifyPassword('whatever passworx', encoded);
    const known = performance.now() - started;
    started = performance.now();
    assert.is(await burnPasswordCheck('whatever password'), false);
    const unknown = performance.now() - started;
    // Same parameters, same work: within a generous factor (CI machines are noisy).
    assert.ok(unknown > known / 4, `unknown user took ${unknown} ms, known ${known} ms`);
  } finally {
    process.env['FERRY_SCRYPT_N'] = '1024';
  }
});

hashing('an invalid FERRY_SCRYPT_N is refused with a clear error', async () => {
  process.env['FERRY_SCRYPT_N'] = '1000';
  try {
    await hashPassword('correct horse battery');
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.instance(error, Error);
    assert.match((error as Error).message, /FERRY_SCRYPT_N/);
  } finally {
    process.env['FERRY_SCRYPT_N'] = '1024';
  }
});

hashing.run();

const strength = suite('password strength');

strength('a password of fewer than 8 characters is refused as weak_password', () => {
  for (const pw of ['', 'a', '1234567']) {
    try {
      validatePassword(pw);
      assert.unreachable(`'${pw}' accepted`);
    } catch (error) {
      assert.instance(error, FerryError);
      assert.is((error as FerryError).code, 'weak_password');
    }
  }
});

strength('a password longer than 1024 characters is refused as weak_password', () => {
  assert.throws(() => validatePassword('x'.repeat(1025)), (e: unknown) => e instanceof FerryError && e.code === 'weak_password');
});

strength('passwords of 8 and 1024 characters are accepted; length counts characters, not bytes', () => {
  validatePassword('12345678');
  validatePassword('x'.repeat(1024));
  validatePassword('🔑🔑🔑🔑🔑🔑🔑🔑'); // 8 characters, 16 UTF-16 units
  assert.throws(() => validatePassword('🔑🔑🔑🔑'), (e: unknown) => e instanceof FerryError && e.code === 'weak_password');
});

strength.run();
