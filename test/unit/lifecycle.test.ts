import { describe, expect, it } from 'vitest'
import { Lifecycle } from '../../src/app/lifecycle.js'
import { GatewayError } from '../../src/errors/catalogue.js'
import { createLogger } from '../../src/observability/logger.js'

describe('Lifecycle: start-up steps that register their stops', () => {
  const log = createLogger('silent')

  it('rolls back the steps done, last first, when one fails, and rethrows its GatewayError', async () => {
    const order: string[] = []
    const life = new Lifecycle(log)
    const failing = life.start([
      { name: 'a', run: () => () => void order.push('stop a') },
      { name: 'b', run: () => undefined },
      { name: 'c', run: async () => async () => void order.push('stop c') },
      { name: 'd', run: () => { throw new GatewayError('E_LISTEN_FAILED', 'cannot listen on 127.0.0.1:1883: the address is in use') } },
      { name: 'e', run: () => () => void order.push('stop e') },
    ])
    await expect(failing).rejects.toMatchObject({ code: 'E_LISTEN_FAILED', message: 'cannot listen on 127.0.0.1:1883: the address is in use' })
    expect(order).toEqual(['stop c', 'stop a'])
    expect(life.running).toEqual([])
  })

  it('wraps a plain error as E_INTERNAL', async () => {
    const life = new Lifecycle(log)
    await expect(life.start([{ name: 'x', run: () => { throw new Error('boom') } }])).rejects.toMatchObject({ code: 'E_INTERNAL', message: 'boom' })
  })

  it('stops each step once, in reverse, and goes on past a stop that fails', async () => {
    const order: string[] = []
    const life = new Lifecycle(log)
    await life.start([
      { name: 'a', run: () => () => void order.push('a') },
      { name: 'b', run: () => () => { throw new Error('b will not stop') } },
      { name: 'c', run: () => () => void order.push('c') },
    ])
    expect(life.running).toEqual(['a', 'b', 'c'])
    await life.stop()
    await life.stop()
    expect(order).toEqual(['c', 'a'])
  })
})
