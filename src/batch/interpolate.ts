const VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface Interpolated {
  value: string;
  /** Variables referred to (set or not). */
  vars: string[];
  /** What is wrong: unset variables, bad syntax. */
  errors: string[];
}

/**
 * Replaces `${NAME}` with the environment variable NAME and `${NAME:-default}` with its value or, when
 * it is unset or empty, `default`. `$${` is a literal `${`. Any other `$` is kept as it is.
 *
 * @example
 * ```ts
 * interpolate('${HOME}/x', { HOME: '/root' }).value; // '/root/x'
 * interpolate('$${HOME}', {}).value;                 // '${HOME}'
 * ```
 */
export function interpolate(text: string, env: Readonly<Record<string, string | undefined>>): Interpolated {
  let value = '';
  const vars: string[] = [];
  const errors: string[] = [];
  let i = 0;
  while (i < text.length) {
    const at = text.indexOf('$', i);
    if (at < 0) {
      value += text.slice(i);
      break;
    }
    value += text.slice(i, at);
    if (text.startsWith('$${', at)) {
      value += '${';
      i = at + 3;
      continue;
    }
    if (!text.startsWith('${', at)) {
      value += '$';
      i = at + 1;
      continue;
    }
    const close = text.indexOf('}', at + 2);
    if (close < 0) {
      errors.push(`unclosed '\${' (write '$\${' for a literal '\${')`);
      value += text.slice(at);
      break;
    }
    const inner = text.slice(at + 2, close);
    const dash = inner.indexOf(':-');
    const name = dash >= 0 ? inner.slice(0, dash) : inner;
    const fallback = dash >= 0 ? inner.slice(dash + 2) : undefined;
    if (!VAR_NAME.test(name)) {
      errors.push(`'\${${inner}}' is not a variable reference (names are letters, digits and _)`);
    } else {
      vars.push(name);
      const set = env[name];
      if (fallback !== undefined) value += set ? set : fallback;
      else if (set === undefined) errors.push(`environment variable ${name} is not set`);
      else value += set;
    }
    i = close + 1;
  }
  return { value, vars, errors };
}
