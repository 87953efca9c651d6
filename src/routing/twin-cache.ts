import type { DeviceRegistry, Twin } from '../registry/types.js'

/** A twin as conditions and enrichments read it (`$twin.tags.x`, `$twin.properties.desired.x`). */
export interface TwinDocument {
  tags: Record<string, unknown>
  properties: { desired: Record<string, unknown>; reported: Record<string, unknown> }
}

/** The registry's twin as conditions read it; undefined for an unknown device. */
export function twinDocument(twin: Twin | null): TwinDocument | undefined {
  return twin ? { tags: twin.tags.properties, properties: { desired: twin.desired.properties, reported: twin.reported.properties } } : undefined
}

interface Entry {
  twin: TwinDocument | undefined
  readAt: number
}

/**
 * Twins for routing, read from the registry and kept up to `maxAgeMs` (routing.twinCacheMs): a
 * twin change reaches conditions and enrichments at most that late. Bounded to `maxEntries`
 * devices (the oldest read is dropped first). A batch's twins are fetched together before its
 * conditions run (lookup), so evaluation itself never waits; concurrent fetches of one device share one
 * registry read. An unknown device (or one removed since) has no twin: `$twin...` is undefined.
 */
export class TwinCache {
  private readonly entries = new Map<string, Entry>()
  private readonly loading = new Map<string, Promise<TwinDocument | undefined>>()

  constructor(
    private readonly registry: Pick<DeviceRegistry, 'getTwin'>,
    private readonly maxAgeMs: number,
    private readonly maxEntries: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** The twins of these devices (a batch's), each at most maxAgeMs old. */
  async lookup(deviceIds: Iterable<string>): Promise<Map<string, TwinDocument | undefined>> {
    const found = new Map<string, TwinDocument | undefined>()
    const waits: Array<Promise<void>> = []
    const now = this.now()
    for (const id of deviceIds) {
      if (found.has(id)) continue
      const entry = this.entries.get(id)
      found.set(id, entry?.twin)
      if (entry && now - entry.readAt <= this.maxAgeMs) continue
      let load = this.loading.get(id)
      if (!load) {
        load = this.load(id).finally(() => this.loading.delete(id))
        this.loading.set(id, load)
      }
      waits.push(load.then((twin) => void found.set(id, twin)))
    }
    await Promise.all(waits)
    return found
  }

  private async load(deviceId: string): Promise<TwinDocument | undefined> {
    const twin = await this.registry.getTwin(deviceId)
    const doc = twinDocument(twin)
    this.entries.delete(deviceId)
    this.entries.set(deviceId, { twin: doc, readAt: this.now() })
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!)
    return doc
  }
}
