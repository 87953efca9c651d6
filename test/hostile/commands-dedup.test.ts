import { rmSync } from 'node:fs'
import { join } from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { afterAll, describe, expect, it } from 'vitest'
import { connect, type MqttClient } from 'mqtt'
import { deviceOptions, waitFor } from '../helpers/gateway.js'
import { MiB, expectSurvived, startHostileGateway, underAttack, type HostileGateway } from '../helpers/hostile.js'
import { appendOffline, readTopic, startHostileGatewayIn } from './gateway-restarts.js'

/**
 * The `commands` topic recreated under a gateway that keeps commands.db: stream.db is deleted
 * and a new record lands at the offset an old one had. It must be queued and delivered (it used
 * to be taken for a replay and vanish). A true replay (the group's offset moved back) is still
 * taken once, and refs of long-expired commands are pruned from commands.db.
 */
interface Feedback {
  messageId: string
  status: string
  reason?: string
}

async function feedback(dataDir: string): Promise<Feedback[]> {
  return (await readTopic(dataDir, 'command-feedback')).map((r) => JSON.parse(r.value.toString()) as Feedback)
}

function commandsDb<T>(dataDir: string, use: (db: BetterSqlite3.Database) => T): T {
  const db = new BetterSqlite3(join(dataDir, 'commands.db'))
  try {
    return use(db)
  } finally {
    db.close()
  }
}

/** The consumer group's committed offset on the device's commands partition (-1: none yet). */
function committed(dataDir: string): number {
  const db = new BetterSqlite3(join(dataDir, 'stream.db'), { readonly: true })
  try {
    const row = db.prepare<[], { n: number | null }>("SELECT max(next_offset) AS n FROM group_offsets WHERE topic = 'commands'").get()
    return row?.n ?? -1
  } finally {
    db.close()
  }
}

describe('hostile: commands topic recreated, replayed, and its refs pruned', () => {
  let gw: HostileGateway | null = null
  let dataDir = ''
  const inbox: string[] = []
  let device: MqttClient | null = null
  afterAll(async () => {
    await device?.endAsync(true).catch(() => undefined)
    await gw?.stop()
  })

  /** Stop the gateway (SIGTERM: a clean shutdown), keeping its data dir. */
  const stop = async (): Promise<void> => {
    await device?.endAsync(true).catch(() => undefined)
    device = null
    await gw!.kill('SIGTERM')
  }
  const connectDevice = async (d: { deviceId: string; token: string }): Promise<void> => {
    // The handler is in place before the CONNACK: the stored subscription makes the gateway
    // deliver a queued message right behind it, in the same read.
    device = await new Promise<MqttClient>((resolve, reject) => {
      const client = connect(gw!.mqttUrl, deviceOptions(d.deviceId, d.token, { connectTimeout: 10_000, reconnectPeriod: 0 }))
      client.on('message', (_topic, payload) => inbox.push(payload.toString()))
      client.once('connect', () => resolve(client))
      client.once('error', reject)
    })
    await device.subscribeAsync(`devices/${d.deviceId}/messages/devicebound/#`, { qos: 1 })
  }
  const command = (messageId: string, payload: string): Parameters<typeof appendOffline>[2][number] => ({
    key: 'cmd-dev', value: Buffer.from(payload), headers: { 'message-id': messageId, 'ttl-ms': '600000' },
  })

  it('queues a new record at a reused offset, takes a replay once, and prunes expired refs', async () => {
    gw = await startHostileGateway()
    dataDir = gw.dataDir
    const canary = await gw.addSasDevice('canary')
    const dev = await gw.addSasDevice('cmd-dev')
    await gw.kill('SIGTERM')

    // 1. A command written while no gateway runs is taken at the next start and delivered.
    await appendOffline(dataDir, 'commands', [command('first', 'one')])
    gw = await startHostileGatewayIn(dataDir)
    await connectDevice(dev)
    await waitFor(() => inbox.includes('one'), 20_000, 'first command delivered')
    await waitFor(async () => (await feedback(dataDir)).some((f) => f.messageId === 'first' && f.status === 'completed'), 20_000, 'first completed')

    // 2. A replay: the group's offset moved back, the same record read again. Taken once.
    await stop()
    const stream = new BetterSqlite3(join(dataDir, 'stream.db'))
    expect(stream.prepare("UPDATE group_offsets SET next_offset = 0 WHERE topic = 'commands'").run().changes).toBeGreaterThan(0)
    stream.close()
    gw = await startHostileGatewayIn(dataDir)
    await connectDevice(dev)
    await waitFor(() => committed(dataDir) >= 1, 20_000, 'the replayed record handled and committed')
    await new Promise((r) => setTimeout(r, 1500))
    expect(inbox.filter((p) => p === 'one'), 'the replay is not delivered again').toHaveLength(1)
    expect((await feedback(dataDir)).filter((f) => f.messageId === 'first')).toHaveLength(1)

    // 3. The topic recreated: stream.db deleted, commands.db kept. A new record gets offset 0 again.
    await stop()
    for (const suffix of ['', '-wal', '-shm']) rmSync(join(dataDir, `stream.db${suffix}`), { force: true })
    await appendOffline(dataDir, 'commands', [command('second', 'two')])
    // An old ref, as left by a command that expired long ago: pruned by the first sweep.
    commandsDb(dataDir, (db) => db.prepare('INSERT INTO c2d_sources (source_ref, keep_until) VALUES (?, ?)').run('stream:commands/0/0#00000000000000000000000000000000', Date.now() - 3 * 3600_000))
    const refsBefore = commandsDb(dataDir, (db) => db.prepare<[], { n: number }>('SELECT count(*) AS n FROM c2d_sources').get()!.n)
    gw = await startHostileGatewayIn(dataDir)
    const running = gw
    const outcome = await underAttack(running, canary, async () => {
      await connectDevice(dev)
      await waitFor(() => inbox.includes('two'), 20_000, 'the record at the reused offset delivered')
      await waitFor(async () => (await feedback(dataDir)).some((f) => f.messageId === 'second' && f.status === 'completed'), 20_000, 'second completed')
      // The sweep (every second) prunes the expired ref.
      await waitFor(() => commandsDb(dataDir, (db) => db.prepare('SELECT 1 FROM c2d_sources WHERE keep_until < ?').get(Date.now()) === undefined), 20_000, 'expired ref pruned')
    })
    await expectSurvived(running, 'commands topic recreated', outcome, { rssGrowthBytes: 48 * MiB })

    expect(inbox).toEqual(['one', 'two'])
    const refs = commandsDb(dataDir, (db) => db.prepare<[], { source_ref: string; keep_until: number }>('SELECT source_ref, keep_until FROM c2d_sources ORDER BY source_ref').all())
    expect(refsBefore).toBe(2)
    // The two records at offset 0 are two refs (same position, different digests); the expired one is gone.
    expect(refs).toHaveLength(2)
    expect(new Set(refs.map((r) => r.source_ref.split('#')[0]))).toEqual(new Set([refs[0]!.source_ref.split('#')[0]]))
    expect(refs.every((r) => r.keep_until > Date.now())).toBe(true)
    const fb = await feedback(dataDir)
    expect(fb.filter((f) => f.messageId === 'second').map((f) => f.status)).toEqual(['completed'])
  }, 180_000)
})
