import { GatewayError } from '../errors/catalogue.js'
import { nestingExceeds } from '../protocol/json-depth.js'

/**
 * Device twin documents (IoT Hub "Understand and use device twins": desired and reported
 * properties): a JSON object per section with a `$version` that grows by one per change. Pure
 * functions, shared by every registry backend.
 */
export type TwinProperties = Record<string, unknown>

export interface TwinSection {
  version: number
  properties: TwinProperties
}

export interface Twin {
  deviceId: string
  desired: TwinSection
  reported: TwinSection
  tags: TwinSection
}

/**
 * Tags are the third section: set by the back end only (IoT Hub: "tags ... are not visible to
 * the device"), read by routing conditions and enrichments ($twin.tags.x).
 */
export type TwinSectionName = 'desired' | 'reported' | 'tags'

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/**
 * Refuse a patch nesting objects or arrays more than `maxDepth` levels below its root (IoT Hub
 * allows 10 in desired and reported properties). Iterative, with an explicit stack, and run before
 * anything recursive (validateTwinPatch, mergeTwinPatch, JSON.stringify): JSON.parse builds a
 * 5,000-deep object without complaint, and walking it recursively overflows the stack. Each node
 * is visited once and the walk stops at the first level too deep.
 */
export function assertTwinDepth(patch: unknown, maxDepth: number): void {
  if (nestingExceeds(patch, maxDepth)) {
    throw new GatewayError('E_TWIN_TOO_DEEP', `the twin patch nests objects or arrays more than ${maxDepth} levels deep`, { maxDepth })
  }
}

/**
 * Check a patch: a JSON object whose keys are not reserved (`$`-prefixed keys such as `$version`
 * and `$metadata` belong to the service, as in IoT Hub).
 */
export function validateTwinPatch(patch: unknown): TwinProperties {
  if (!isPlainObject(patch)) throw new GatewayError('E_BAD_REQUEST', 'a twin patch must be a JSON object')
  const walk = (obj: Record<string, unknown>, path: string): void => {
    for (const [key, value] of Object.entries(obj)) {
      if (key.startsWith('$')) throw new GatewayError('E_BAD_REQUEST', `twin property "${path}${key}" is reserved ($-prefixed)`)
      if (isPlainObject(value)) walk(value, `${path}${key}.`)
    }
  }
  walk(patch, '')
  return patch
}

/** JSON merge patch (RFC 7396): `null` deletes a key, objects merge, anything else replaces. */
export function mergeTwinPatch(target: TwinProperties, patch: TwinProperties): TwinProperties {
  const out: TwinProperties = { ...target }
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key]
    else if (isPlainObject(value)) out[key] = mergeTwinPatch(isPlainObject(out[key]) ? out[key] : {}, value)
    else out[key] = value
  }
  return out
}

/** Bytes of the section as stored (UTF-8 JSON), compared with commands.maxTwinSectionBytes. */
export function assertTwinSize(section: TwinSectionName, properties: TwinProperties, maxBytes: number): void {
  const bytes = Buffer.byteLength(JSON.stringify(properties))
  if (bytes > maxBytes) {
    throw new GatewayError('E_TWIN_TOO_LARGE', `the ${section} properties would be ${bytes} bytes, over the maximum of ${maxBytes}`, { section, bytes, maxBytes })
  }
}

/** The section as IoT Hub shows it: the properties plus `$version`. */
export function sectionDocument(section: TwinSection): TwinProperties {
  return { ...section.properties, $version: section.version }
}
