export const WHITESPACE = /\s/;

/**
 * Why `subject` is not a valid subject, or undefined when it is. Tokens are
 * separated by `.` and never empty; no whitespace anywhere. With
 * `wildcards`, a whole token `*` matches one token and a last token `>`
 * matches one or more; without, both are refused. As in NATS, `*` or `>`
 * inside a longer token (`a*b`) is a literal character.
 *
 * @example
 * subjectError('a.*.c', true); // undefined
 * subjectError('a..b', false); // 'empty token'
 */
export function subjectError(subject: string, wildcards: boolean): string | undefined {
  if (typeof subject !== 'string' || subject.length === 0) return 'empty subject';
  if (WHITESPACE.test(subject)) return 'whitespace';
  let start = 0;
  for (let i = 0; i <= subject.length; i++) {
    if (i < subject.length && subject.charCodeAt(i) !== 46 /* . */) continue;
    const len = i - start;
    if (len === 0) return 'empty token';
    if (len === 1) {
      const c = subject.charCodeAt(start);
      if (c === 42 /* * */ || c === 62 /* > */) {
        if (!wildcards) return 'wildcards are not allowed when publishing';
        if (c === 62 && i !== subject.length) return '">" must be the last token';
      }
    }
    start = i + 1;
  }
  return undefined;
}

/**
 * Whether subscription subject `pattern` matches the literal `subject`.
 *
 * @example
 * subjectMatches('a.>', 'a.b.c'); // true
 * subjectMatches('a.>', 'a');     // false: ">" needs at least one token
 */
export function subjectMatches(pattern: string, subject: string): boolean {
  return tokensMatch(pattern.split('.'), subject.split('.'));
}

export function tokensMatch(pattern: readonly string[], subject: readonly string[]): boolean {
  const n = pattern.length;
  for (let i = 0; i < n; i++) {
    const p = pattern[i];
    if (p === '>') return subject.length > i;
    if (i >= subject.length) return false;
    if (p !== '*' && p !== subject[i]) return false;
  }
  return n === subject.length;
}
