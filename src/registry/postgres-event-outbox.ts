import type { DeviceEvent, PendingDeviceEvent } from './device-event.js'
import type { Queryable } from '../postgres/pool.js'

/**
 * The `device_event_outbox` table of the PostgreSQL registry (postgres-schema.ts), as
 * sqlite-event-outbox.ts is for registry.db. insertEvent runs on the client of the change's own
 * transaction; the others are single statements on the pool.
 */

export async function insertEvent(client: Queryable, event: DeviceEvent): Promise<void> {
  await client.query('INSERT INTO device_event_outbox (device_id, body) VALUES ($1, $2)', [event.deviceId, JSON.stringify(event)])
}

/** Insert several events in the order given (ids follow it: the INSERT takes them in ORDER BY order). */
export async function insertEvents(client: Queryable, events: readonly DeviceEvent[]): Promise<void> {
  if (events.length === 0) return
  await client.query(
    `INSERT INTO device_event_outbox (device_id, body)
     SELECT e.device_id, e.body FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS e(device_id, body, n) ORDER BY e.n`,
    [events.map((e) => e.deviceId), events.map((e) => JSON.stringify(e))],
  )
}

/**
 * Claim in one statement. Several gateways share this table, so two claims may run at the same
 * moment, each seeing the table as it was when its statement began:
 *
 * - `FOR UPDATE SKIP LOCKED` hands each row to one claimer: a row another claim is taking right
 *   now is skipped, and a row claimed (or removed) since this statement began is re-checked
 *   against its newest version, which is then claimed or gone, so it drops out.
 * - Per-device order: a row is left out while an older row of its device is claimed (as in
 *   SQLite). That test alone is not enough here: the older row may be in a concurrent claim
 *   that has not committed, invisible as such to this statement. So a row is handed out only
 *   when every older row of its device is in this very claim; an older row skipped because it
 *   was locked holds its device back until the next call. A row that takes its id later cannot
 *   overtake either: per device, ids are taken in commit order (postgres-schema.ts).
 *
 * Times are the database's (now()), so the gateways' clocks need not agree. A lapsed claim (its
 * writer died) frees the row.
 */
export async function claimEvents(client: Queryable, limit: number, claimMs: number): Promise<PendingDeviceEvent[]> {
  const { rows } = await client.query<{ id: string; body: string }>(
    `WITH candidates AS (
       SELECT e.id, e.device_id FROM device_event_outbox e
       WHERE e.claimed_until <= now()
         AND NOT EXISTS (SELECT 1 FROM device_event_outbox o WHERE o.device_id = e.device_id AND o.id < e.id AND o.claimed_until > now())
       ORDER BY e.id
       LIMIT $1
       FOR UPDATE SKIP LOCKED
     ), claimable AS (
       SELECT c.id FROM candidates c
       WHERE NOT EXISTS (
         SELECT 1 FROM device_event_outbox o
         WHERE o.device_id = c.device_id AND o.id < c.id AND o.id NOT IN (SELECT id FROM candidates))
     )
     UPDATE device_event_outbox e SET claimed_until = now() + $2::double precision * interval '1 millisecond'
     FROM claimable WHERE e.id = claimable.id
     RETURNING e.id, e.body`,
    [limit, claimMs],
  )
  return rows
    .map((r) => ({ id: Number(r.id), event: JSON.parse(r.body) as DeviceEvent }))
    .sort((a, b) => a.id - b.id)
}

export async function releaseEvents(client: Queryable, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return
  await client.query("UPDATE device_event_outbox SET claimed_until = '-infinity' WHERE id = ANY($1::bigint[])", [ids])
}

export async function removeEvents(client: Queryable, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return
  await client.query('DELETE FROM device_event_outbox WHERE id = ANY($1::bigint[])', [ids])
}

export async function countEvents(client: Queryable): Promise<number> {
  const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM device_event_outbox')
  return rows[0]!.n
}
