import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomBytes } from 'node:crypto'
import { expectSurvived, MiB, sasToken, startHostileGateway, underAttack, type HostileGateway } from '../helpers/hostile.js'
import { probeConnect, type ProbeOutcome } from './connect-probe.js'

/**
 * The failed-login limiter must not be a denial-of-service tool: whoever knows a device id, or
 * shares an address with a guesser, must not be able to keep a valid credential out. Against a
 * real gateway process with the default limits (auth.maxFailuresPerDevice 10,
 * auth.maxFailuresPerAddress 20), each attack runs while the canary connects and publishes.
 */
const PER_PAIR = 10
const PER_ADDRESS = 20

describe('hostile: failed logins do not lock out valid credentials', () => {
  let gw: HostileGateway
  let canary: { deviceId: string; token: string }
  let connect: (localAddress: string, clientId: string, password: string) => Promise<ProbeOutcome>

  beforeAll(async () => {
    gw = await startHostileGateway()
    canary = await gw.addSasDevice('limiter-canary')
    connect = (localAddress, clientId, password) => probeConnect({ port: gw.mqttPort, localAddress, clientId, password })
  })
  afterAll(async () => {
    await gw?.stop()
  })

  it('accepts a SAS device after bad tokens for it from ten addresses, from an eleventh and from the attackers', async () => {
    const x = await gw.addSasDevice('victim-sas')
    const badToken = sasToken(x.deviceId, randomBytes(32).toString('base64'))
    const attackers = Array.from({ length: 10 }, (_, i) => `127.0.0.${11 + i}`)
    const outcome = await underAttack(gw, canary, async () => {
      const bad: number[] = []
      // Each attacker sends more than a full per-device budget of bad tokens.
      for (const address of attackers) for (let i = 0; i < PER_PAIR + 2; i++) bad.push((await connect(address, x.deviceId, badToken)).code as number)
      const fromElsewhere = await connect('127.0.0.21', x.deviceId, x.token)
      const fromAttacker = await connect(attackers[0]!, x.deviceId, x.token)
      return { bad, fromElsewhere, fromAttacker }
    })
    const { bad, fromElsewhere, fromAttacker } = outcome.result
    expect(new Set(bad), 'every bad token is checked and refused as not authorized').toEqual(new Set([5]))
    expect(fromElsewhere.code, 'the valid token from an eleventh address').toBe(0)
    expect(fromAttacker.code, 'the valid token from an attacking address').toBe(0)
    await expectSurvived(gw, 'bad tokens from ten addresses', outcome, { rssGrowthBytes: 32 * MiB })
  }, 60_000)

  it('accepts valid SAS and password devices from an address with more than twenty failures', async () => {
    const sas = await gw.addSasDevice('nat-sas')
    await gw.addPasswordDevice('nat-pwd', 'nat password 1234')
    await gw.addPasswordDevice('nat-other', 'other password 1234')
    const nat = '127.0.0.30'
    const outcome = await underAttack(gw, canary, async () => {
      const failures: number[] = []
      // Unknown devices with passwords and bad tokens, and wrong passwords for another device
      // (fewer than its per-pair budget), all from one address: well past the per-address count.
      for (let i = 0; i < PER_ADDRESS + 6; i++) {
        const ghost = `nat-ghost-${i}`
        failures.push((await connect(nat, ghost, i % 2 === 0 ? 'guess' : sasToken(ghost, randomBytes(32).toString('base64')))).code as number)
      }
      for (let i = 0; i < PER_PAIR - 1; i++) failures.push((await connect(nat, 'nat-other', `wrong ${i}`)).code as number)
      return { failures, sasDevice: await connect(nat, sas.deviceId, sas.token), passwordDevice: await connect(nat, 'nat-pwd', 'nat password 1234') }
    })
    const { failures, sasDevice, passwordDevice } = outcome.result
    expect(failures, 'every failure was checked and refused as not authorized').toEqual(Array(PER_ADDRESS + 6 + PER_PAIR - 1).fill(5))
    expect(sasDevice.code, 'a SAS device behind the same address').toBe(0)
    expect(passwordDevice.code, 'a password device behind the same address').toBe(0)
    await expectSurvived(gw, 'twenty-plus failures from one address', outcome, { rssGrowthBytes: 96 * MiB })
  }, 60_000)

  it("refuses a password guesser after its budget while the device's correct password from elsewhere connects", async () => {
    await gw.addPasswordDevice('victim-pwd', 'victim password 1234')
    const guesser = '127.0.0.40'
    const outcome = await underAttack(gw, canary, async () => {
      const guesses: number[] = []
      for (let i = 0; i < PER_PAIR + 5; i++) guesses.push((await connect(guesser, 'victim-pwd', `guess ${i}`)).code as number)
      return {
        guesses,
        guesserWithTheRightPassword: await connect(guesser, 'victim-pwd', 'victim password 1234'),
        deviceFromElsewhere: await connect('127.0.0.41', 'victim-pwd', 'victim password 1234'),
      }
    })
    const { guesses, guesserWithTheRightPassword, deviceFromElsewhere } = outcome.result
    expect(guesses.slice(0, PER_PAIR), 'guesses checked and refused').toEqual(Array(PER_PAIR).fill(5))
    expect(guesses.slice(PER_PAIR), 'guesses past the budget, refused unchecked').toEqual(Array(5).fill(3))
    // The budget is the source's own: even the right password is not checked from there now.
    expect(guesserWithTheRightPassword.code).toBe(3)
    expect(deviceFromElsewhere.code, 'the device from another address').toBe(0)
    const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text()
    expect(metrics).toMatch(/^streamgate_auth_password_refusals_total\{reason="rate-limited"\} ([6-9]|\d\d+)$/m)
    expect(metrics).toMatch(/^streamgate_auth_failures_total\{code="E_AUTH_RATE_LIMITED"\} ([6-9]|\d\d+)$/m)
    await expectSurvived(gw, 'password guesser', outcome, { rssGrowthBytes: 96 * MiB })
  }, 60_000)
})
