import { FerryError, isErrorCode, type ErrorCode } from '../core/errors.ts';
import { quote } from '../core/text.ts';

/**
 * Control messages are JSON objects with a type tag `t`. Each type's fields are declared once, in the
 * tables below; both the TypeScript types and the runtime validation come from those tables.
 */
type FieldSpec = 'str' | 'str?' | 'uint' | 'uint?' | 'bool?' | 'strs' | 'strs?' | 'hex64' | 'hex64?' | 'json' | 'json?';
export type Spec = Record<string, FieldSpec>;

interface FieldTypes {
  str: string;
  uint: number;
  bool: boolean;
  strs: string[];
  hex64: string;
  json: unknown;
}
type Base<F extends FieldSpec> = F extends `${infer B}?` ? B : F;
type Required<S extends Spec> = { [K in keyof S as S[K] extends `${string}?` ? never : K]: FieldTypes[Base<S[K]> & keyof FieldTypes] };
type Optional<S extends Spec> = { [K in keyof S as S[K] extends `${string}?` ? K : never]?: FieldTypes[Base<S[K]> & keyof FieldTypes] };
type FromSpec<S extends Spec> = Required<S> & Optional<S>;
type Union<T extends Record<string, Spec>> = { [K in keyof T]: { t: K } & FromSpec<T[K]> }[keyof T];

/** Messages a client sends. */
export const CLIENT_MESSAGES = {
  hello: { v: 'uint', agent: 'str', features: 'strs' },
  signup: { user: 'str', password: 'str' },
  login: { user: 'str', password: 'str' },
  /** `recursive` (feature `bundle`): everything below, each entry named by its relative path. */
  list: { path: 'str', recursive: 'bool?' },
  stat: { path: 'str', sha256: 'bool?' },
  /** `link` (feature `link`): the bytes come by an HTTPS PUT to the address the server gives in a `link` message. */
  put: { path: 'str', size: 'uint', mtime: 'uint?', overwrite: 'bool?', parents: 'bool?', resume: 'bool?', encoding: 'str?', link: 'bool?' },
  from: { offset: 'uint' },
  /** The end of an upload (`put`: with the file's SHA-256) or of a bundle's stream (`putmany`, `getmany`: without). */
  end: { sha256: 'hex64?' },
  get: { path: 'str', offset: 'uint?', accept: 'strs?' },
  cancel: {},
  /** Many small files as one stream of records (feature `bundle`; protocol/bundle.ts). */
  putmany: {},
  getmany: {},
  delete: { path: 'str' },
  mkdir: { path: 'str', parents: 'bool?' },
  rename: { from: 'str', to: 'str', overwrite: 'bool?' },
  log: { all: 'bool?', limit: 'uint?' },
  clearlog: {},
  /** A short-lived, single-use HTTPS address of one file, for a browser to download it natively (feature `link`). */
  link: { path: 'str' },
  ping: {},
  bye: {},
  /** A client's last word before it closes the connection because the server broke the protocol. */
  error: { code: 'str', message: 'str' },
} as const satisfies Record<string, Spec>;

/** Messages a server sends. */
export const SERVER_MESSAGES = {
  welcome: { v: 'uint', agent: 'str', features: 'strs', maxData: 'uint', maxMessage: 'uint', signup: 'str' },
  ok: { result: 'json?' },
  error: { code: 'str', message: 'str' },
  entries: { entries: 'json' },
  events: { events: 'json' },
  meta: { size: 'uint', mtime: 'uint', encoding: 'str?' },
  resume: { offset: 'uint', sha256: 'hex64' },
  end: { sha256: 'hex64' },
  /** One record of a bundle that was not stored (`putmany`) or cannot be sent (`getmany`); `index` counts records from 0. */
  failed: { index: 'uint', code: 'str', message: 'str' },
  /** `putmany`: the first `count` records are settled, each stored or answered `failed` before this. */
  stored: { count: 'uint' },
  /** `put` with `link`: where to send the bytes (an HTTPS PUT to this path on the server's origin, once). */
  link: { url: 'str' },
} as const satisfies Record<string, Spec>;

export type ClientMessage = Union<typeof CLIENT_MESSAGES>;
export type ServerMessage = Union<typeof SERVER_MESSAGES>;
export type ClientMessageType = ClientMessage['t'];
export type ServerMessageType = ServerMessage['t'];
export type ClientMessageOf<T extends ClientMessageType> = Extract<ClientMessage, { t: T }>;
export type ServerMessageOf<T extends ServerMessageType> = Extract<ServerMessage, { t: T }>;

const HEX64 = /^[0-9a-f]{64}$/;

function checkField(type: FieldSpec, value: unknown): boolean {
  switch (type.replace('?', '') as Base<FieldSpec>) {
    case 'str':
      return typeof value === 'string';
    case 'uint':
      return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
    case 'bool':
      return typeof value === 'boolean';
    case 'strs':
      return Array.isArray(value) && value.length <= 64 && value.every((v) => typeof v === 'string' && v.length <= 64);
    case 'hex64':
      return typeof value === 'string' && HEX64.test(value);
    case 'json':
      return value !== undefined;
  }
}

function parse<T extends Record<string, Spec>>(table: T, body: Buffer | string): Union<T> {
  let value: unknown;
  try {
    value = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch {
    throw new FerryError('bad_message', 'Control message is not valid JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FerryError('bad_message', 'Control message is not a JSON object');
  }
  const record = value as Record<string, unknown>;
  const t = record.t;
  if (typeof t !== 'string' || !Object.hasOwn(table, t)) {
    throw new FerryError('unknown_message', `Unknown message type ${typeof t === 'string' ? quote(t, 40) : '(none)'}`);
  }
  checkFields(`'${t}'`, table[t] as Spec, record, true);
  return record as Union<T>;
}

/**
 * Checks the fields of `record` against `spec` (unknown fields, missing ones, wrong types: `bad_message`).
 * `what` names the object in the error ("'put'", "put record"); `tagged`: a message, whose `t` is not a field.
 */
export function checkFields(what: string, spec: Spec, record: Record<string, unknown>, tagged = false): void {
  for (const key of Object.keys(record)) {
    if (!(tagged && key === 't') && !Object.hasOwn(spec, key)) throw new FerryError('bad_message', `Message ${what} has an unknown field ${quote(key, 40)}`);
  }
  for (const [key, type] of Object.entries(spec)) {
    const present = record[key] !== undefined;
    if (!present) {
      if (!type.endsWith('?')) throw new FerryError('bad_message', `Message ${what} lacks field '${key}'`);
      continue;
    }
    if (!checkField(type, record[key])) throw new FerryError('bad_message', `Message ${what} has a bad '${key}'`);
  }
}

/** Parses and validates a client's control message (used by the server: trusts nothing). */
export function parseClientMessage(body: Buffer | string): ClientMessage {
  return parse(CLIENT_MESSAGES, body);
}

/** Parses and validates a server's control message (used by the client). */
export function parseServerMessage(body: Buffer | string): ServerMessage {
  const msg = parse(SERVER_MESSAGES, body);
  if (msg.t === 'error' && !isErrorCode(msg.code)) {
    // An unknown code from a newer server is kept as 'internal' so that callers can switch on it safely.
    return { t: 'error', code: 'internal', message: `${msg.code}: ${msg.message}` };
  }
  return msg;
}

export type ErrorMessage = { t: 'error'; code: ErrorCode; message: string };
