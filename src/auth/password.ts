import { scrypt, randomBytes, timingSafeEqual, type ScryptOptions } from 'node:crypto'

/**
 * Device passwords are stored only as scrypt hashes: `scrypt$N$r$p$<salt b64>$<hash b64>`.
 * N=16384, r=8, p=1 (the OWASP floor for scrypt); about 50 ms of CPU and 128*N*r = 16 MiB of
 * memory per check, which is why the CONNECT flow runs verifyPassword only through the bounded
 * queue of hash-gate.ts, after the failed-password limits of password-guard.ts.
 */
const N = 16384
const R = 8
const P = 1
const KEYLEN = 32

function scryptAsync(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await scryptAsync(password, salt, KEYLEN, { N, r: R, p: P })
  return ['scrypt', N, R, P, salt.toString('base64'), hash.toString('base64')].join('$')
}

export async function verifyPassword(password: string, record: string): Promise<boolean> {
  const parts = record.split('$')
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false
  const [, n, r, p, saltB64, hashB64] = parts as [string, string, string, string, string, string]
  const expected = Buffer.from(hashB64, 'base64')
  const actual = await scryptAsync(password, Buffer.from(saltB64, 'base64'), expected.length, {
    N: Number(n),
    r: Number(r),
    p: Number(p),
  })
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}
