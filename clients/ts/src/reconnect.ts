// When and how soon the client reconnects.

/**
 * Full-jitter exponential back-off: a uniformly random delay in
 * `[0, min(maxDelay, initialDelay * 2^attempt)]`, `attempt` counting from 0.
 */
export function backoffDelay(
  attempt: number,
  initialDelay: number,
  maxDelay: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelay, initialDelay * Math.pow(2, Math.max(0, attempt)));
  return Math.min(ceiling, Math.floor(random() * (ceiling + 1)));
}

/**
 * Close codes after which the client does not reconnect (PROTOCOL.md
 * section 6): a policy refusal (1008: a guard, or wrong credentials) or a
 * failing guard (1011) would refuse the next attempt just the same.
 */
const FINAL_CLOSE_CODES = new Set([1008, 1011]);

/**
 * The 1008 reasons of section 9 that say nothing against the credentials,
 * so a new connection with a fresh `getToken()` can succeed: the token ran
 * out before a refresh was accepted (a slow or failed `getToken`, a frozen
 * tab), or the first one did not arrive in time. "Authentication failed"
 * (a refused token) stays final.
 */
const RETRYABLE_AUTH_REASONS = new Set(['Token expired', 'Authentication timeout']);

/**
 * True when a close ends reconnecting. `inBand`: the client authenticates
 * with `getToken`; without it every 1008 is final, since the same URL or
 * missing token would only be refused again.
 */
export function isFinalClose(code: number, reason: string, inBand: boolean): boolean {
  if (!FINAL_CLOSE_CODES.has(code)) return false;
  return !(inBand && code === 1008 && RETRYABLE_AUTH_REASONS.has(reason));
}
