/**
 * Full-jitter exponential back-off: a uniformly random delay in
 * `[0, min(maxDelay, initialDelay * 2^attempt)]`, `attempt` counting from 0.
 */
export declare function backoffDelay(attempt: number, initialDelay: number, maxDelay: number, random?: () => number): number;
/**
 * True when a close ends reconnecting. `inBand`: the client authenticates
 * with `getToken`; without it every 1008 is final, since the same URL or
 * missing token would only be refused again.
 */
export declare function isFinalClose(code: number, reason: string, inBand: boolean): boolean;
