import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { AUDIT_EVENTS, renderEvent, type AuditEvent } from '../../src/audit/mod.ts';

const T = '2024-04-18T12:31:03.694276Z';
const PREFIX = '2024-04-18 12:31:03.694276 - ';
const SHA = 'ab12cd34ef56'.padEnd(64, '0');

function e(fields: Partial<AuditEvent> & Pick<AuditEvent, 'event'>): AuditEvent {
  return { time: T, user: 'x', address: '10.0.0.1:5000', result: 'ok', ...fields };
}

function r(fields: Partial<AuditEvent> & Pick<AuditEvent, 'event'>): string {
  return renderEvent(e(fields), { utc: true });
}

// ---------------------------------------------------------------------------------------------------------
const ok = suite('renderEvent: successful events');

ok('upload in the original words, now naming the user', () => {
  assert.is(r({ event: 'upload', user: 'new_user', path: 'text.txt' }), `${PREFIX}UPLOAD: Uploaded file 'text.txt' by 'new_user'`);
});

ok('upload and download add size, duration and a short digest when known', () => {
  assert.is(r({ event: 'upload', path: 'a', bytes: 11, sha256: SHA }), `${PREFIX}UPLOAD: Uploaded file 'a' by 'x' (11 B, sha256 ab12cd34ef56…)`);
  assert.is(
    r({ event: 'download', path: 'a', bytes: 3 * 1024 * 1024 + 200_000, durationMs: 1450, sha256: SHA }),
    `${PREFIX}DOWNLOAD: Downloaded file 'a' by 'x' (3.2 MiB in 1.4 s, sha256 ab12cd34ef56…)`,
  );
  assert.is(r({ event: 'download', path: 'a', bytes: 2048, durationMs: 12 }), `${PREFIX}DOWNLOAD: Downloaded file 'a' by 'x' (2.0 KiB in 12 ms)`);
  assert.is(r({ event: 'download', path: 'a' }), `${PREFIX}DOWNLOAD: Downloaded file 'a' by 'x'`);
});

ok('every other event type', () => {
  assert.is(r({ event: 'login' }), `${PREFIX}LOGIN: User 'x' logged in from 10.0.0.1:5000`);
  assert.is(r({ event: 'login_failed', result: 'error' }), `${PREFIX}LOGIN: Authentication failed for user: x from 10.0.0.1:5000`);
  assert.is(r({ event: 'signup' }), `${PREFIX}SIGNUP: Signed up user 'x' from 10.0.0.1:5000`);
  assert.is(r({ event: 'delete', path: 'a' }), `${PREFIX}DELETE: File 'a' was deleted by 'x'`);
  assert.is(r({ event: 'rename', path: 'a', to: 'b' }), `${PREFIX}RENAME: Renamed 'a' to 'b' by 'x'`);
  assert.is(r({ event: 'mkdir', path: 'd' }), `${PREFIX}MKDIR: Created directory 'd' by 'x'`);
  assert.is(r({ event: 'log_read' }), `${PREFIX}RDLOG: Log read by 'x'`);
  assert.is(
    r({ event: 'log_clear', detail: 'audit-20240418T123103694Z.log' }),
    `${PREFIX}CLRLOG: Log cleared by 'x' (archived as audit-20240418T123103694Z.log)`,
  );
});

ok('IPv6 addresses are shown as stored', () => {
  assert.is(r({ event: 'login', address: '[::1]:2121' }), `${PREFIX}LOGIN: User 'x' logged in from [::1]:2121`);
});

ok.run();

// ---------------------------------------------------------------------------------------------------------
const failed = suite('renderEvent: failed events');

failed('each failed operation says so with its error code', () => {
  const err = { result: 'error' as const };
  assert.is(r({ event: 'upload', path: 'a', ...err, error: 'digest_mismatch' }), `${PREFIX}UPLOAD: Upload of 'a' by 'x' failed (digest_mismatch)`);
  assert.is(r({ event: 'download', path: 'a', ...err, error: 'not_found' }), `${PREFIX}DOWNLOAD: Download of 'a' by 'x' failed (not_found)`);
  assert.is(r({ event: 'delete', path: 'a', ...err, error: 'not_empty' }), `${PREFIX}DELETE: Deletion of 'a' by 'x' failed (not_empty)`);
  assert.is(r({ event: 'rename', path: 'a', to: 'b', ...err, error: 'exists' }), `${PREFIX}RENAME: Rename of 'a' to 'b' by 'x' failed (exists)`);
  assert.is(r({ event: 'mkdir', path: 'd', ...err, error: 'exists' }), `${PREFIX}MKDIR: Creating directory 'd' by 'x' failed (exists)`);
  assert.is(r({ event: 'log_read', ...err, error: 'permission_denied' }), `${PREFIX}RDLOG: Log read by 'x' failed (permission_denied)`);
  assert.is(r({ event: 'log_clear', ...err, error: 'permission_denied' }), `${PREFIX}CLRLOG: Log clear by 'x' failed (permission_denied)`);
  assert.is(r({ event: 'login', ...err, error: 'locked_out' }), `${PREFIX}LOGIN: Log-in of 'x' from 10.0.0.1:5000 failed (locked_out)`);
  assert.is(r({ event: 'signup', ...err, error: 'user_exists' }), `${PREFIX}SIGNUP: Sign-up of 'x' from 10.0.0.1:5000 failed (user_exists)`);
  assert.is(
    r({ event: 'login_failed', ...err, error: 'locked_out' }),
    `${PREFIX}LOGIN: Authentication failed for user: x from 10.0.0.1:5000 (locked_out)`,
  );
});

failed('a failure without a code still says it failed; detail is appended', () => {
  assert.is(r({ event: 'upload', path: 'a', result: 'error' }), `${PREFIX}UPLOAD: Upload of 'a' by 'x' failed (unknown error)`);
  assert.is(
    r({ event: 'upload', path: 'a', result: 'error', error: 'quota_exceeded', detail: 'limit 1 GiB' }),
    `${PREFIX}UPLOAD: Upload of 'a' by 'x' failed (quota_exceeded, limit 1 GiB)`,
  );
});

failed.run();

// ---------------------------------------------------------------------------------------------------------
const safety = suite('renderEvent: one safe line');

safety('every event type renders as one line that names the user', () => {
  for (const event of AUDIT_EVENTS) {
    for (const result of ['ok', 'error'] as const) {
      const line = r({ event, result, user: 'someone', path: 'p', to: 'q', error: 'internal' });
      assert.ok(!/[\n\r]/.test(line), line);
      assert.ok(line.includes('someone'), line);
      assert.ok(line.startsWith(PREFIX), line);
    }
  }
});

safety('an empty user is never shown as an empty quote', () => {
  assert.is(r({ event: 'upload', user: '', path: 'a' }), `${PREFIX}UPLOAD: Uploaded file 'a' by (unknown user)`);
  assert.is(r({ event: 'login_failed', user: '' }), `${PREFIX}LOGIN: Authentication failed for user: (unknown user) from 10.0.0.1:5000`);
});

safety('names and paths from clients cannot break the line or inject terminal codes', () => {
  assert.is(
    r({ event: 'login_failed', user: "x from 6.6.6.6\nLOGIN: User 'root' logged in" }),
    `${PREFIX}LOGIN: Authentication failed for user: 'x from 6.6.6.6\\nLOGIN: User \\'root\\' logged in' from 10.0.0.1:5000`,
  );
  assert.is(r({ event: 'upload', path: "it's\u001b[31mred\u202e.txt" }), `${PREFIX}UPLOAD: Uploaded file 'it\\'s\\u001b[31mred\\u202e.txt' by 'x'`);
  assert.is(r({ event: 'delete', path: 'a\\b' }), `${PREFIX}DELETE: File 'a\\\\b' was deleted by 'x'`);
});

safety('local time is the default; the microseconds are kept as stored', () => {
  const local = renderEvent(e({ event: 'log_read' }));
  const d = new Date(Date.UTC(2024, 3, 18, 12, 31, 3));
  const p = (n: number) => String(n).padStart(2, '0');
  const expected = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.694276`;
  assert.is(local, `${expected} - RDLOG: Log read by 'x'`);
  assert.is(renderEvent(e({ event: 'log_read', time: '2024-04-18T12:31:03Z' }), { utc: true }), '2024-04-18 12:31:03.000000 - RDLOG: Log read by \'x\'');
  assert.is(renderEvent(e({ event: 'log_read', time: 'garbage' }), { utc: true }), "garbage - RDLOG: Log read by 'x'");
});

safety.run();
