import { FerryError } from '../../core/errors.ts';
import { escapeText, word } from '../../core/text.ts';
import type { ClientMessage, ClientMessageOf, ClientMessageType } from '../../protocol/messages.ts';
import type { Results, ResultType } from '../../protocol/results.ts';
import { hello, login, signup } from './account.ts';
import type { GetBundles } from './getmany.ts';
import type { PutBundles } from './putmany.ts';
import type { Downloads } from './download.ts';
import { link, list, mkdir, remove, rename, stat } from './files.ts';
import { clearLog, readLog } from './log.ts';
import type { LoggedIn, SessionScope } from './scope.ts';
import type { Uploads } from './upload.ts';

/** A session as the request handlers see it: its scope, and its transfers. */
export interface Conn extends SessionScope {
  readonly uploads: Uploads;
  readonly putBundles: PutBundles;
  readonly getBundles: GetBundles;
  readonly downloads: Downloads;
}

/** What a handler returns when it has answered the request itself (a download's meta/data/end, an upload's later ok). */
export const REPLIED: unique symbol = Symbol('replied');

/** Requests with a handler of their own; the others belong to a request (`from`, `end`, `cancel`) or to the connection. */
export type RequestType = Exclude<ClientMessageType, 'hello' | 'from' | 'end' | 'cancel' | 'error'>;
type Answer<T extends RequestType> = (T extends ResultType ? (T extends 'put' | 'putmany' | 'getmany' ? never : Results[T]) : never) | typeof REPLIED;
type Handler<T extends RequestType> = (c: Conn, id: number, msg: ClientMessageOf<T>, started: number) => Promise<Answer<T>>;

/** Only once logged in (`auth_required` before); the handler gets the account and its storage. */
function loggedIn<T extends RequestType>(handle: (c: Conn, id: number, msg: ClientMessageOf<T>, user: LoggedIn, started: number) => Promise<Answer<T>>): Handler<T> {
  return (c, id, msg, started) => {
    const user = c.user;
    if (c.stage !== 'ready' || user === null) throw new FerryError('auth_required', 'Log in first (LOGIN or SIGNUP)');
    return handle(c, id, msg, user, started);
  };
}

/**
 * The request handler table (ssh2's MESSAGE_HANDLERS shape): one entry per request type, each returning the
 * typed result of its `ok` (protocol/results.ts) or REPLIED. A request type without an entry does not compile.
 */
export const HANDLERS: { readonly [T in RequestType]: Handler<T> } = {
  ping: async () => null,
  bye: async (c, id) => {
    await Promise.all([c.downloads.finished(), c.getBundles.finished()]);
    c.transport.send(id, { t: 'ok' });
    c.close();
    return REPLIED;
  },
  signup: (c, _id, msg) => signup(c, msg),
  login: (c, _id, msg) => login(c, msg),
  list: loggedIn(list),
  stat: loggedIn(stat),
  put: loggedIn(async (c, id, msg, user, started) => {
    await c.uploads.put(id, msg, user, started);
    return REPLIED;
  }),
  putmany: loggedIn(async (c, id, msg, user, started) => {
    await c.putBundles.start(id, msg, user, started);
    return REPLIED;
  }),
  getmany: loggedIn(async (c, id, msg, user, started) => {
    await c.getBundles.start(id, msg, user, started);
    return REPLIED;
  }),
  get: loggedIn(async (c, id, msg, user, started) => {
    await c.downloads.get(id, msg, user, started);
    return REPLIED;
  }),
  delete: loggedIn(remove),
  mkdir: loggedIn(mkdir),
  rename: loggedIn(rename),
  log: loggedIn(readLog),
  clearlog: loggedIn(clearLog),
  link: loggedIn(link),
};

/** The original's words for each request, for the console. */
const INSTRUCTION: Partial<Record<ClientMessageType, string>> = {
  put: 'UPLD', putmany: 'UPLD', getmany: 'DWLD', get: 'DWLD', list: 'LIST', delete: 'DELF', log: 'RDLOG', clearlog: 'CLRLOG', mkdir: 'MKDIR',
  rename: 'RENAME', stat: 'STAT', signup: 'SIGNUP', login: 'LOGIN', link: 'DWLD',
};

/**
 * Handles one control message from the client, in the order it arrived: the handshake first, then requests
 * (through HANDLERS) and the continuations of uploads and downloads. A request's failure is answered with its
 * error and logged; only a protocol violation is thrown (it ends the connection).
 */
export async function dispatch(c: Conn, id: number, msg: ClientMessage): Promise<void> {
  if (msg.t === 'error') {
    c.info(`The client gave up on the connection: ${escapeText(msg.code, 40)}: ${escapeText(msg.message, 200)}`);
    c.close();
    return;
  }
  if (c.stage === 'hello') {
    if (msg.t !== 'hello' || id !== 0) throw new FerryError('unexpected_message', `Expected 'hello' first, got '${msg.t}'`);
    return hello(c, msg);
  }
  switch (msg.t) {
    case 'hello':
      throw new FerryError('unexpected_message', "A second 'hello'");
    case 'end':
      if (c.putBundles.owns(id)) return c.putBundles.end(id, msg);
      if (c.getBundles.owns(id)) return c.getBundles.end(id, msg);
      return c.uploads.end(id, msg);
    case 'from':
      return c.uploads.from(id, msg);
    case 'cancel':
      // Neither an upload nor a download in progress: the request already finished, nothing to do.
      if (!(await c.uploads.cancel(id)) && !c.putBundles.cancel(id) && !c.getBundles.cancel(id)) c.downloads.cancel(id);
      return;
    default:
      break;
  }
  if (id === 0 && msg.t !== 'bye') throw new FerryError('unexpected_message', `Request '${msg.t}' without an id`);
  if (c.uploads.owns(id) || c.putBundles.owns(id) || c.getBundles.owns(id) || c.downloads.owns(id)) throw new FerryError('duplicate_id', `Request id ${id} is already in use`);
  const started = Date.now();
  try {
    const handle = HANDLERS[msg.t] as Handler<RequestType>;
    const result = await handle(c, id, msg as ClientMessageOf<RequestType>, started);
    if (result !== REPLIED) c.transport.send(id, result === null ? { t: 'ok' } : { t: 'ok', result });
  } catch (err) {
    const ferr = c.problem(err, msg.t);
    if (ferr.fatal) throw ferr;
    if (msg.t === 'put' || msg.t === 'putmany' || msg.t === 'getmany') c.uploads.refuse(id);
    c.transport.send(id, { t: 'error', code: ferr.code, message: ferr.message });
    const verb = INSTRUCTION[msg.t];
    if (verb) c.info(`${verb} ${describe(msg)}: ${ferr.code}: ${ferr.message}`);
  }
}

/** What a request is about, for its console line: the client's words escaped and cut. */
function describe(msg: ClientMessage): string {
  switch (msg.t) {
    case 'put':
    case 'get':
    case 'list':
    case 'stat':
    case 'delete':
    case 'mkdir':
      return escapeText(msg.path, 200);
    case 'rename':
      return `${escapeText(msg.from, 200)} -> ${escapeText(msg.to, 200)}`;
    case 'putmany':
    case 'getmany':
      return '(a bundle)';
    case 'signup':
    case 'login':
      return word(msg.user);
    default:
      return '';
  }
}
