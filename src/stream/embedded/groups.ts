import type { Database, Statement } from 'better-sqlite3'

/**
 * Consumer groups in the stream file, so that they work across processes: committed offsets,
 * live members and partition leases. Two gateway processes reading one `commands` topic in one
 * group each get a share of the partitions, and a record is handed to one of them only.
 *
 * Protocol (every member, in one BEGIN IMMEDIATE transaction per rebalance):
 *  1. refresh its member row (expires_at = now + lease); drop expired members and leases;
 *  2. fair share: with members sorted by id, member i may hold floor(P/n) (+1 for i < P mod n);
 *  3. above its share it releases its highest partitions; below it, it takes free ones.
 * Shares sum to P, so members converge within a round or two of heartbeats. A member only
 * rebalances between batches, so it never releases a partition while a batch of it is in a handler,
 * and it commits through `commit`, which refuses when the lease has passed to another member
 * (then that batch may be handled twice: at-least-once, only after a member stalled past its lease).
 *
 * Lease times use the wall clock (Date.now), the only clock processes share.
 */

export interface GroupOptions {
  db: Database
  group: string
  topic: string
  partitions: number
  memberId: string
  leaseMs: number
}

export class GroupMembership {
  private readonly db: Database
  private readonly key: [string, string]
  private readonly stmts: ReturnType<typeof prepare>

  constructor(private readonly options: GroupOptions) {
    this.db = options.db
    this.key = [options.group, options.topic]
    this.stmts = prepare(options.db)
  }

  /** The committed next offset of a partition, or null when the group never committed one. */
  committed(partition: number): number | null {
    return this.stmts.selectOffset.get(...this.key, partition)?.next_offset ?? null
  }

  /**
   * Commit the next offset to read. With `leased`, only while this member holds the partition's
   * lease (an expired but untaken lease is renewed); returns false when it has lost the lease.
   */
  commit(partition: number, nextOffset: number, leased: boolean): boolean {
    const run = this.db.transaction((): boolean => {
      const now = Date.now()
      if (leased) {
        const owner = this.stmts.selectLeaseOwner.get(...this.key, partition)?.owner
        if (owner !== undefined && owner !== this.options.memberId) return false
        this.stmts.upsertLease.run(...this.key, partition, this.options.memberId, now + this.options.leaseMs)
      }
      this.stmts.upsertOffset.run(...this.key, partition, nextOffset, now)
      return true
    })
    return run.immediate()
  }

  /** Run one round of the protocol above; returns the partitions this member now holds. */
  rebalance(): number[] {
    const run = this.db.transaction((): number[] => {
      const now = Date.now()
      const { memberId, leaseMs, partitions } = this.options
      this.stmts.upsertMember.run(...this.key, memberId, now + leaseMs)
      this.stmts.deleteExpiredMembers.run(...this.key, now)
      this.stmts.deleteExpiredLeases.run(...this.key, now)

      const members = this.stmts.selectMembers.all(...this.key).map((row) => row.member_id)
      const index = members.indexOf(memberId)
      const share = Math.floor(partitions / members.length) + (index < partitions % members.length ? 1 : 0)

      const owners = new Map(this.stmts.selectLeases.all(...this.key).map((row) => [row.partition, row.owner]))
      const mine = [...owners].filter(([p, owner]) => owner === memberId && p < partitions).map(([p]) => p).sort((a, b) => a - b)
      while (mine.length > share) this.stmts.deleteLease.run(...this.key, mine.pop()!, memberId)
      for (let p = 0; p < partitions && mine.length < share; p++) {
        if (owners.has(p)) continue
        this.stmts.upsertLease.run(...this.key, p, memberId, now + leaseMs)
        mine.push(p)
      }
      this.stmts.renewLeases.run(now + leaseMs, ...this.key, memberId)
      return mine.sort((a, b) => a - b)
    })
    return run.immediate()
  }

  /** Keep the member row and this member's leases alive (timer, also while a handler runs long). */
  renew(): void {
    const expires = Date.now() + this.options.leaseMs
    const run = this.db.transaction(() => {
      this.stmts.renewMember.run(expires, ...this.key, this.options.memberId)
      this.stmts.renewLeases.run(expires, ...this.key, this.options.memberId)
    })
    run.immediate()
  }

  /** Release every lease and the member row, so the others take over at their next rebalance. */
  leave(): void {
    const run = this.db.transaction(() => {
      this.stmts.deleteMyLeases.run(...this.key, this.options.memberId)
      this.stmts.deleteMember.run(...this.key, this.options.memberId)
    })
    run.immediate()
  }
}

type Key = [group: string, topic: string]

function prepare(db: Database) {
  const s = <P extends unknown[], R = unknown>(sql: string): Statement<P, R> => db.prepare<P, R>(sql)
  const where = 'group_id = ? AND topic = ?'
  return {
    selectOffset: s<[...Key, number], { next_offset: number }>(`SELECT next_offset FROM group_offsets WHERE ${where} AND partition = ?`),
    upsertOffset: s<[...Key, number, number, number]>(
      `INSERT INTO group_offsets (group_id, topic, partition, next_offset, updated_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset = excluded.next_offset, updated_at = excluded.updated_at`,
    ),
    upsertMember: s<[...Key, string, number]>(
      `INSERT INTO group_members (group_id, topic, member_id, expires_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (group_id, topic, member_id) DO UPDATE SET expires_at = excluded.expires_at`,
    ),
    renewMember: s<[number, ...Key, string]>(`UPDATE group_members SET expires_at = ? WHERE ${where} AND member_id = ?`),
    deleteMember: s<[...Key, string]>(`DELETE FROM group_members WHERE ${where} AND member_id = ?`),
    deleteExpiredMembers: s<[...Key, number]>(`DELETE FROM group_members WHERE ${where} AND expires_at <= ?`),
    selectMembers: s<Key, { member_id: string }>(`SELECT member_id FROM group_members WHERE ${where} ORDER BY member_id`),
    selectLeases: s<Key, { partition: number; owner: string }>(`SELECT partition, owner FROM group_leases WHERE ${where}`),
    selectLeaseOwner: s<[...Key, number], { owner: string }>(`SELECT owner FROM group_leases WHERE ${where} AND partition = ?`),
    upsertLease: s<[...Key, number, string, number]>(
      `INSERT INTO group_leases (group_id, topic, partition, owner, expires_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (group_id, topic, partition) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at`,
    ),
    renewLeases: s<[number, ...Key, string]>(`UPDATE group_leases SET expires_at = ? WHERE ${where} AND owner = ?`),
    deleteLease: s<[...Key, number, string]>(`DELETE FROM group_leases WHERE ${where} AND partition = ? AND owner = ?`),
    deleteMyLeases: s<[...Key, string]>(`DELETE FROM group_leases WHERE ${where} AND owner = ?`),
    deleteExpiredLeases: s<[...Key, number]>(`DELETE FROM group_leases WHERE ${where} AND expires_at <= ?`),
  }
}
