import type { Database } from 'better-sqlite3'
import type { DeviceEvent, PendingDeviceEvent } from './device-event.js'
import { prepared } from '../sqlite/statements.js'

/**
 * The `device_event_outbox` table of registry.db (migration v4). The functions run on the
 * registry's connection; insertEvent runs inside the transaction of the change it reports.
 */

export function insertEvent(db: Database, event: DeviceEvent): void {
  prepared(db, 'INSERT INTO device_event_outbox (device_id, body) VALUES (?, ?)').run(event.deviceId, JSON.stringify(event))
}

/**
 * Claim in one statement, so two gateways on this file never take the same rows. A row is left
 * out while an older row of its device is claimed by someone else: that writer appends first, and
 * the device's events reach the stream in order. A lapsed claim (its writer died) frees the row.
 */
export function claimEvents(db: Database, limit: number, claimMs: number, now: number): PendingDeviceEvent[] {
  // A read first: the common case (nothing pending) then takes no write lock.
  const any = prepared(db, 'SELECT 1 FROM device_event_outbox WHERE claimed_until <= ? LIMIT 1').get(now)
  if (!any) return []
  return prepared<unknown[], { id: number; body: string }>(db,
      `UPDATE device_event_outbox SET claimed_until = ?
       WHERE id IN (
         SELECT e.id FROM device_event_outbox e
         WHERE e.claimed_until <= ?
           AND NOT EXISTS (SELECT 1 FROM device_event_outbox o WHERE o.device_id = e.device_id AND o.id < e.id AND o.claimed_until > ?)
         ORDER BY e.id LIMIT ?)
       RETURNING id, body`,
    )
    .all(now + claimMs, now, now, limit)
    .sort((a, b) => a.id - b.id)
    .map((r) => ({ id: r.id, event: JSON.parse(r.body) as DeviceEvent }))
}

/** One statement for the whole batch (ids as a JSON array): no transaction wrapper per call. */
export function releaseEvents(db: Database, ids: readonly number[]): void {
  prepared(db, 'UPDATE device_event_outbox SET claimed_until = 0 WHERE id IN (SELECT value FROM json_each(?))').run(JSON.stringify(ids))
}

export function removeEvents(db: Database, ids: readonly number[]): void {
  prepared(db, 'DELETE FROM device_event_outbox WHERE id IN (SELECT value FROM json_each(?))').run(JSON.stringify(ids))
}

export function countEvents(db: Database): number {
  return prepared<unknown[], { n: number }>(db, 'SELECT count(*) AS n FROM device_event_outbox').get()!.n
}
