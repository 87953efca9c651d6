import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { ERROR_CODES, GatewayError } from '../../src/errors/catalogue.js'

describe('error catalogue', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')

  it('documents every code in docs/errors.md with its HTTP status and CONNACK code', () => {
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      const row = doc.split('\n').find((line) => line.startsWith(`| \`${code}\` |`))
      expect(row, `${code} missing from docs/errors.md`).toBeDefined()
      expect(row).toContain(`| ${spec.http} |`)
      expect(row).toContain(`| ${spec.connack} |`)
    }
  })

  it('documents no code that does not exist', () => {
    const documented = [...doc.matchAll(/^\| `(E_[A-Z0-9_]+)` \|/gm)].map((m) => m[1])
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort())
  })

  it('maps a code to its HTTP status and CONNACK return code', () => {
    const err = new GatewayError('E_AUTH_EXPIRED', 'token expired')
    expect(err.httpStatus).toBe(401)
    expect(err.returnCode).toBe(5)
    expect(new GatewayError('E_AUTH_CLIENT_ID_MISMATCH', 'x').returnCode).toBe(2)
  })
})
