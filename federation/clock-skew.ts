// Another cluster's clock may be up to federation.maxClockSkew from ours, either way. Every time stamped by
// a remote clock is judged here: one definition of "past its expiry" for everything that holds remote
// messages (verifier, catalog store, snapshot assembly, link reports), and one way to say, when a message
// is refused, how far off the signer's clock looks and what to do about it.

/**
 * Whether an expiry stamped by another cluster's clock has passed by ours: only once it is more than
 * `maxClockSkew` behind us, the same allowance an issuedAt gets ahead of us. Whatever accepted a message on
 * this rule must keep it by the same rule, or a cluster whose clock runs behind by more than its entries'
 * lifetime has them accepted and dropped again within a second.
 */
export function pastExpiry(expiresAt: number, now: number, maxClockSkew: number): boolean {
  return expiresAt + maxClockSkew < now;
}

/** "4 min", "45 s": a duration as an operator reads it */
export function roughly(ms: number): string {
  const s = Math.abs(ms) / 1000;
  return s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
}

/**
 * The end of a refusal's detail for a message whose time stamp (`stampedAt`, by its signer's clock) is
 * `stampedAt - now` away from ours: how far, and the fix.
 */
export function skewAdvice(cluster: string, stampedAt: number, now: number, maxClockSkew: number): string {
  const off = stampedAt - now;
  return `cluster ${cluster}'s clock looks about ${roughly(off)} ${off >= 0 ? 'ahead of' : 'behind'} this gateway's, more than federation.maxClockSkew (${roughly(maxClockSkew)}) allows: set the clocks right (NTP) on cluster ${cluster}'s hosts or this one, or raise federation.maxClockSkew on every gateway`;
}
