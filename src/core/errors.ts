/**
 * Stable error codes carried in `error` messages. The code is the contract; the message is for people.
 * `fatal` codes end the connection; `retryable` tells a client (batch) whether trying again can help.
 */
export const ERROR_CODES = {
  // Connection-level (fatal): the peer broke the protocol.
  bad_preamble: { fatal: true, retryable: false, text: 'the peer did not start with the ferry preamble' },
  bad_frame: { fatal: true, retryable: false, text: 'a frame header is malformed (unknown kind)' },
  frame_too_large: { fatal: true, retryable: false, text: 'a frame is larger than the negotiated limit' },
  bad_message: { fatal: true, retryable: false, text: 'a control message is not valid JSON of the expected shape' },
  unknown_message: { fatal: true, retryable: false, text: 'a control message type is unknown' },
  unexpected_message: { fatal: true, retryable: false, text: 'a message or data frame arrived out of order' },
  version_mismatch: { fatal: true, retryable: false, text: 'no protocol version in common' },
  timeout: { fatal: true, retryable: true, text: 'the peer was silent for too long' },
  too_many_connections: { fatal: true, retryable: true, text: 'the server has too many connections (in total or from this address)' },
  shutting_down: { fatal: true, retryable: true, text: 'the server is stopping' },
  connection_lost: { fatal: true, retryable: true, text: 'the connection was lost' },
  duplicate_id: { fatal: true, retryable: false, text: 'a request id is already in use' },
  // Request-level: the request failed, the connection goes on.
  auth_required: { fatal: false, retryable: false, text: 'log in first' },
  auth_failed: { fatal: false, retryable: false, text: 'wrong user name or password' },
  locked_out: { fatal: false, retryable: true, text: 'too many failed log-ins; wait and try again' },
  already_authenticated: { fatal: false, retryable: false, text: 'this connection is already logged in' },
  signup_closed: { fatal: false, retryable: false, text: 'the server does not allow sign-up' },
  user_exists: { fatal: false, retryable: false, text: 'that user name is taken' },
  invalid_username: { fatal: false, retryable: false, text: 'the user name is not allowed' },
  weak_password: { fatal: false, retryable: false, text: 'the password is too short or too long' },
  invalid_path: { fatal: false, retryable: false, text: 'the path is not allowed' },
  not_found: { fatal: false, retryable: false, text: 'no such file or directory' },
  exists: { fatal: false, retryable: false, text: 'the target already exists' },
  not_a_directory: { fatal: false, retryable: false, text: 'a path component is not a directory' },
  is_a_directory: { fatal: false, retryable: false, text: 'the path is a directory' },
  not_empty: { fatal: false, retryable: false, text: 'the directory is not empty' },
  permission_denied: { fatal: false, retryable: false, text: 'your account may not do that' },
  size_mismatch: { fatal: false, retryable: true, text: 'the bytes received differ from the declared size' },
  digest_mismatch: { fatal: false, retryable: true, text: 'the SHA-256 of the bytes received differs from the declared one' },
  cancelled: { fatal: false, retryable: false, text: 'the request was cancelled' },
  busy: { fatal: false, retryable: true, text: 'the server is busy; try again' },
  quota_exceeded: { fatal: false, retryable: false, text: 'the storage quota would be exceeded' },
  too_large: { fatal: false, retryable: false, text: 'the file is larger than the server accepts' },
  denied: { fatal: false, retryable: false, text: 'a server plugin refused the operation' },
  bad_encoding: { fatal: false, retryable: true, text: 'the encoded (e.g. compressed) bytes of a transfer could not be decoded' },
  no_space: { fatal: false, retryable: true, text: 'the server is out of disk space' },
  unavailable: { fatal: false, retryable: true, text: "the server's storage or database is unavailable for the moment; try again" },
  internal: { fatal: false, retryable: true, text: 'the server hit an unexpected error' },
} as const satisfies Record<string, { fatal: boolean; retryable: boolean; text: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** An error with a stable protocol code. Thrown by the decoder, the server's handlers and the client. */
export class FerryError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string) {
    super(message ?? ERROR_CODES[code].text);
    this.name = 'FerryError';
    this.code = code;
  }
  get fatal(): boolean {
    return ERROR_CODES[this.code].fatal;
  }
  get retryable(): boolean {
    return ERROR_CODES[this.code].retryable;
  }
}
