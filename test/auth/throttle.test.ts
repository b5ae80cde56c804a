import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { LoginThrottle, RateLimit, THROTTLE_DEFAULTS, type ThrottleOptions } from '../../src/auth/throttle.ts';

function setup(options: Partial<ThrottleOptions> = {}) {
  const clock = { t: 1_000_000 };
  const throttle = new LoginThrottle({ now: () => clock.t, ...options });
  return { clock, throttle };
}

const delays = suite('failed log-in delays');

delays('the defaults are the documented ones', () => {
  const { now: _now, ...rest } = THROTTLE_DEFAULTS;
  assert.equal(rest, {
    userLimit: 5,
    userLockMs: 60_000,
    addressLimit: 20,
    addressLockMs: 300_000,
    decayMs: 900_000,
    baseDelayMs: 250,
    maxDelayMs: 4_000,
    maxEntries: 10_000,
  });
});

delays('the delay is 0 after one failure, then doubles from 250 ms, capped at 4 s', () => {
  // A huge user limit so only the delay is under test here.
  const { throttle } = setup({ userLimit: 1000, addressLimit: 1000 });
  assert.is(throttle.delayFor('10.0.0.1', 'alice'), 0);
  const seen: number[] = [];
  for (let i = 0; i < 9; i++) {
    throttle.failure('10.0.0.1', 'alice');
    seen.push(throttle.delayFor('10.0.0.1', 'alice'));
  }
  assert.equal(seen, [0, 250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
});

delays('the delay follows the user name across addresses, and the address across names', () => {
  const { throttle } = setup({ userLimit: 1000, addressLimit: 1000 });
  throttle.failure('10.0.0.1', 'alice');
  throttle.failure('10.0.0.2', 'alice');
  throttle.failure('10.0.0.3', 'alice');
  assert.is(throttle.delayFor('10.0.0.9', 'alice'), 500);
  assert.is(throttle.delayFor('10.0.0.9', 'bob'), 0);
  throttle.failure('10.0.0.4', 'x1');
  throttle.failure('10.0.0.4', 'x2');
  assert.is(throttle.delayFor('10.0.0.4', 'x3'), 250);
});

delays.run();

const lockout = suite('lock-outs');

lockout('five failures for a user from any addresses lock that user for 60 s', () => {
  const { clock, throttle } = setup();
  for (let i = 0; i < 4; i++) {
    throttle.failure(`10.0.0.${i}`, 'alice');
    assert.equal(throttle.check('10.0.0.99', 'alice'), { allowed: true });
  }
  throttle.failure('10.0.0.4', 'Alice');
  assert.equal(throttle.check('10.0.0.99', 'ALICE'), { allowed: false, retryAfterMs: 60_000 });
  // Other users from the same addresses are not affected.
  assert.equal(throttle.check('10.0.0.4', 'bob'), { allowed: true });
  clock.t += 59_000;
  assert.equal(throttle.check('10.0.0.99', 'alice'), { allowed: false, retryAfterMs: 1_000 });
  clock.t += 1_000;
  assert.equal(throttle.check('10.0.0.99', 'alice'), { allowed: true });
});

lockout('twenty failures from one address, for any names, lock that address for 5 min', () => {
  const { clock, throttle } = setup();
  for (let i = 0; i < 19; i++) {
    throttle.failure('192.0.2.7', `user${i}`);
    assert.equal(throttle.check('192.0.2.7', 'someone'), { allowed: true });
  }
  throttle.failure('192.0.2.7', 'user19');
  assert.equal(throttle.check('192.0.2.7', 'someone'), { allowed: false, retryAfterMs: 300_000 });
  assert.equal(throttle.check('::ffff:192.0.2.7', 'someone'), { allowed: false, retryAfterMs: 300_000 });
  assert.equal(throttle.check('192.0.2.8', 'someone'), { allowed: true });
  clock.t += 300_000;
  assert.equal(throttle.check('192.0.2.7', 'someone'), { allowed: true });
});

lockout('a failure after a lock-out ends locks again until the quiet window passes', () => {
  const { clock, throttle } = setup();
  for (let i = 0; i < 5; i++) throttle.failure('10.0.0.1', 'alice');
  clock.t += 60_000;
  assert.equal(throttle.check('10.0.0.1', 'alice'), { allowed: true });
  throttle.failure('10.0.0.1', 'alice');
  assert.is(throttle.check('10.0.0.1', 'alice').allowed, false);
});

lockout('failures are forgotten after 15 quiet minutes', () => {
  const { clock, throttle } = setup();
  for (let i = 0; i < 4; i++) throttle.failure('10.0.0.1', 'alice');
  assert.is(throttle.delayFor('10.0.0.1', 'alice'), 1000);
  clock.t += 15 * 60_000;
  assert.is(throttle.delayFor('10.0.0.1', 'alice'), 0);
  throttle.failure('10.0.0.1', 'alice');
  assert.equal(throttle.check('10.0.0.1', 'alice'), { allowed: true }, 'the count started again from zero');
  assert.is(throttle.delayFor('10.0.0.1', 'alice'), 0);
});

lockout('failures spaced less than the quiet window apart keep adding up', () => {
  const { clock, throttle } = setup();
  for (let i = 0; i < 5; i++) {
    clock.t += 14 * 60_000;
    throttle.failure('10.0.0.1', 'alice');
  }
  assert.is(throttle.check('10.0.0.1', 'alice').allowed, false);
});

lockout('a success clears the user counter but not the address counter', () => {
  const { throttle } = setup();
  for (let i = 0; i < 4; i++) throttle.failure('10.0.0.1', 'alice');
  throttle.success('10.0.0.2', 'ALICE');
  throttle.failure('10.0.0.2', 'alice');
  // Four earlier failures of alice are forgotten: one more does not lock her.
  assert.equal(throttle.check('10.0.0.2', 'alice'), { allowed: true });
});

lockout('logging in between guesses does not reset the address count', () => {
  const { throttle } = setup();
  for (let i = 0; i < 19; i++) throttle.failure('10.0.0.1', `victim${i}`);
  throttle.success('10.0.0.1', 'mallory');
  throttle.failure('10.0.0.1', 'victim99');
  assert.is(throttle.check('10.0.0.1', 'anyone').allowed, false);
});

lockout.run();

const memory = suite('memory bound');

memory('the maps never hold more than maxEntries keys; the oldest go first', () => {
  const { throttle } = setup({ maxEntries: 100 });
  for (let i = 0; i < 3; i++) throttle.failure('10.9.9.1', 'early');
  assert.is(throttle.delayFor('10.9.9.9', 'early'), 500);
  for (let i = 0; i < 1000; i++) throttle.failure(`10.0.${i >> 8}.${i & 255}`, `user${i}`);
  assert.equal(throttle.size, { addresses: 100, users: 100 });
  assert.is(throttle.delayFor('10.9.9.9', 'early'), 0, 'the oldest key was dropped');
  for (let i = 0; i < 4; i++) throttle.failure('10.9.9.9', 'user999');
  assert.is(throttle.check('10.9.9.8', 'user999').allowed, false);
});

memory('with the default cap, a flood of distinct names stays at 10,000 keys', () => {
  const { throttle } = setup();
  for (let i = 0; i < 25_000; i++) throttle.failure(`addr${i}`, `name${i}`);
  assert.equal(throttle.size, { addresses: 10_000, users: 10_000 });
});

memory.run();

const rate = suite('rate limit');

rate('allows up to the limit in the window, then refuses until events age out', () => {
  let t = 0;
  const limit = new RateLimit({ limit: 3, windowMs: 1000, now: () => t });
  assert.equal([limit.take('a'), limit.take('a'), limit.take('a'), limit.take('a')], [true, true, true, false]);
  assert.ok(limit.take('b'), 'other keys are independent');
  t = 999;
  assert.not.ok(limit.take('a'));
  t = 1001;
  assert.ok(limit.take('a'));
});

rate('keeps at most maxKeys keys', () => {
  const limit = new RateLimit({ limit: 1, windowMs: 1000, maxKeys: 10, now: () => 0 });
  assert.not.ok((limit.take('first'), limit.take('first')));
  for (let i = 0; i < 50; i++) limit.take(`k${i}`);
  assert.ok(limit.take('first'), 'the oldest key was forgotten');
});

rate.run();
