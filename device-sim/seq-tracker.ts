/**
 * Which sequence numbers of one device the stream has shown, in memory proportional to the gaps,
 * not to the traffic: one device's records sit in one partition in send order, so seqs arrive
 * mostly increasing. Kept: the highest seq seen and the set of lower seqs not seen (yet).
 */
export class SeqTracker {
  private highest = 0
  private readonly missing = new Set<number>()

  /** Returns 'new' the first time a seq is seen, 'duplicate' after that. */
  see(seq: number): 'new' | 'duplicate' {
    if (seq > this.highest) {
      for (let s = this.highest + 1; s < seq; s++) this.missing.add(s)
      this.highest = seq
      return 'new'
    }
    return this.missing.delete(seq) ? 'new' : 'duplicate'
  }

  /** How many of the seqs 1..upTo were seen. */
  foundUpTo(upTo: number): number {
    if (upTo >= this.highest) return this.highest - this.missing.size
    let missingBelow = 0
    for (const s of this.missing) if (s <= upTo) missingBelow++
    return upTo - missingBelow
  }
}
