import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { startTestGateway } from '../helpers/gateway.js'
import { api, errorCode, TOKEN, type ApiResponse } from '../helpers/commands.js'
import { OVERRIDES, UNAUTHORIZED, expectServing, fixture, rawApi, refused, snapshot, type Fixture } from '../helpers/routing-hostile.js'

/**
 * The routing surface under attack: /api/routes, /api/endpoints and POST /api/routes/test fed
 * wrong tokens, hostile names, conditions built to overflow a recursive parser, definitions past
 * every bound, and bodies nested 10,000 deep; then webhook endpoints that hang, stream an endless
 * answer, redirect, cut the connection or are not there. Each refusal has its exact status and
 * code, changes nothing (the route store's change counter stands still) and leaves the gateway
 * serving: the API answers and a device's QoS 1 publish is acknowledged.
 */
describe('hostile: the routing API', () => {
  let f: Fixture
  let baseline: { version: number; definitions: unknown }

  beforeAll(async () => {
    const gw = await startTestGateway(OVERRIDES)
    f = await fixture(gw, 'canary')
    expect((await api(gw.httpUrl, 'PUT', '/api/endpoints/sink', { type: 'stream', topic: 'hostile-out' })).status).toBe(201)
    expect((await api(gw.httpUrl, 'PUT', '/api/routes/base', { condition: "$body.kind = 'base'", endpoints: ['sink'] })).status).toBe(201)
    baseline = await snapshot(gw)
  })

  afterAll(async () => {
    await f?.canary.endAsync(true).catch(() => undefined)
    await f?.gw.stop()
  })

  afterEach(async () => {
    const now = await snapshot(f.gw)
    // A failure here must not fail every later test as well.
    const before = baseline
    baseline = now
    expect(now, 'no refused request changed a definition').toEqual(before)
    await expectServing(f)
  })

  it('answers 401 E_UNAUTHORIZED without the admin token on every routing route, and creates nothing', async () => {
    const calls: Array<[string, string, unknown?]> = [
      ['GET', '/api/routes'],
      ['POST', '/api/routes/test', { condition: 'true' }],
      ['GET', '/api/routes/base'],
      ['PUT', '/api/routes/intruder', { endpoints: ['sink'] }],
      ['DELETE', '/api/routes/base'],
      ['GET', '/api/endpoints'],
      ['GET', '/api/endpoints/sink'],
      ['PUT', '/api/endpoints/intruder', { type: 'webhook', url: 'http://127.0.0.1:9/x' }],
      ['DELETE', '/api/endpoints/sink'],
    ]
    const tokens: Array<string | null> = [null, '', 'wrong', TOKEN.slice(0, -1), `${TOKEN}x`, `${TOKEN} ${TOKEN}`]
    for (const [method, path, body] of calls) {
      for (const token of tokens) {
        const res = await api(f.gw.httpUrl, method, path, body, { token })
        expect({ method, path, token, status: res.status, body: res.body }).toEqual({ method, path, token, status: 401, body: UNAUTHORIZED })
      }
      // Another scheme carrying the right token is still no bearer token.
      const basic = await api(f.gw.httpUrl, method, path, body, { token: null, headers: { authorization: `Basic ${TOKEN}` } })
      expect([basic.status, basic.body]).toEqual([401, UNAUTHORIZED])
    }
    const challenge = await fetch(`${f.gw.httpUrl}/api/routes`)
    expect(challenge.headers.get('www-authenticate')).toBe('Bearer')
    refused(await api(f.gw.httpUrl, 'GET', '/api/routes/intruder'), 404, 'E_ROUTE_NOT_FOUND')
    refused(await api(f.gw.httpUrl, 'GET', '/api/endpoints/intruder'), 404, 'E_ENDPOINT_NOT_FOUND')
  })

  it('answers hostile names with 400 or 404 in the envelope, never 500', async () => {
    const long65 = 'a'.repeat(65)
    const long10k = 'n'.repeat(10_000)
    for (const kind of ['routes', 'endpoints'] as const) {
      const notFound = kind === 'routes' ? 'E_ROUTE_NOT_FOUND' : 'E_ENDPOINT_NOT_FOUND'
      const body = kind === 'routes' ? { endpoints: ['sink'] } : { type: 'stream', topic: 'x-out' }
      const base = `/api/${kind}`
      // Over the 64-character bound: refused by the path schema on every method.
      for (const method of ['GET', 'PUT', 'DELETE']) {
        refused(await api(f.gw.httpUrl, method, `${base}/${long65}`, method === 'PUT' ? body : undefined), 400, 'E_BAD_REQUEST', 'name')
        refused(await api(f.gw.httpUrl, method, `${base}/${long10k}`, method === 'PUT' ? body : undefined), 400, 'E_BAD_REQUEST', 'longer than 512 characters')
      }
      const tooLong = await api(f.gw.httpUrl, 'GET', `${base}/${long10k}`)
      expect(JSON.stringify(tooLong.body).length, 'the answer does not repeat a 10 KB name').toBeLessThan(300)
      // Legal in a URL, not in a name: unknown to GET and DELETE, refused by PUT.
      for (const name of ['..%2F..', '..%2F..%2Fetc%2Fpasswd', '%C3%A9t%C3%A9', '%F0%9F%92%A9', '%E2%80%AEevil', 'a%20b', '%20', '%00', 'x%0D%0Ay', '%25', 'a%2Fb']) {
        refused(await api(f.gw.httpUrl, 'GET', `${base}/${name}`), 404, notFound)
        refused(await api(f.gw.httpUrl, 'DELETE', `${base}/${name}`), 404, notFound)
        refused(await api(f.gw.httpUrl, 'PUT', `${base}/${name}`, body), 400, 'E_BAD_REQUEST', 'names are 1 to 64 of A-Z a-z 0-9 . _ -')
      }
      // A lone surrogate, percent-encoded, is no UTF-8 at all.
      refused(await api(f.gw.httpUrl, 'PUT', `${base}/%ED%A0%80`, body), 400, 'E_BAD_REQUEST', 'not valid percent-encoded UTF-8')
      // The empty name is the collection with a slash: no PUT or DELETE there.
      refused(await api(f.gw.httpUrl, 'PUT', `${base}/`, body), 400, 'E_BAD_REQUEST')
      refused(await api(f.gw.httpUrl, 'DELETE', `${base}/`), 400, 'E_BAD_REQUEST')
      // The body may not rename what the path names, nor be anything but an object.
      refused(await api(f.gw.httpUrl, 'PUT', `${base}/other`, { ...body, name: 'sneaky' }), 400, 'E_BAD_REQUEST', 'the body names "sneaky", the path "other"')
      refused(await api(f.gw.httpUrl, 'PUT', `${base}/other`, { ...body, name: 'Other' }), 400, 'E_BAD_REQUEST', 'the path "other"')
      refused(await api(f.gw.httpUrl, 'PUT', `${base}/other`, { ...body, name: 7 }), 400, 'E_BAD_REQUEST', 'the body names "7"')
      for (const notObject of ['[]', 'null', '"x"', '42']) {
        refused(await api(f.gw.httpUrl, 'PUT', `${base}/other`, notObject), 400, 'E_BAD_REQUEST')
      }
    }
  })

  // The name rule allows them (IoT Hub's: letters, digits, - _ .), but every WHATWG URL client
  // (fetch, the CLI, browsers) folds /api/routes/.. into /api/ and /api/routes/. into /api/routes/:
  // once in (sent raw, or seeded from routing.routes in the config) such a route or endpoint can be
  // neither read nor removed through them. Device ids refuse "." and ".." for the same reason.
  it('refuses the names "." and ".." (sent raw), which no URL-normalising client could address again', async () => {
    const answers: Record<string, number> = {}
    for (const [kind, body] of [['routes', '{"endpoints":["sink"]}'], ['endpoints', '{"type":"stream","topic":"dots-out"}']] as const) {
      for (const name of ['%2E', '%2E%2E', '.', '..']) {
        const res = await rawApi(f.gw, 'PUT', `/api/${kind}/${name}`, body)
        answers[`PUT /api/${kind}/${name}`] = res.status
        // Undo what got in, so the shared fixture stays as it was whatever the answer.
        if (res.status < 300) await rawApi(f.gw, 'DELETE', `/api/${kind}/${name}`)
      }
    }
    // What got in was taken out again: the change counter moved on purpose.
    baseline = await snapshot(f.gw)
    expect(answers).toEqual({
      'PUT /api/routes/%2E': 400,
      'PUT /api/routes/%2E%2E': 400,
      'PUT /api/routes/.': 400,
      'PUT /api/routes/..': 400,
      'PUT /api/endpoints/%2E': 400,
      'PUT /api/endpoints/%2E%2E': 400,
      'PUT /api/endpoints/.': 400,
      'PUT /api/endpoints/..': 400,
    })
  })

  it('answers hostile POST /api/routes/test bodies with 400 or 404', async () => {
    const test = (body: unknown): Promise<ApiResponse> => api(f.gw.httpUrl, 'POST', '/api/routes/test', body)
    refused(await test({}), 400, 'E_BAD_REQUEST', 'give condition or route (one of them)')
    refused(await test({ condition: 'true', route: 'base' }), 400, 'E_BAD_REQUEST', 'give condition or route (one of them)')
    refused(await test({ route: 'r'.repeat(10_000) }), 400, 'E_BAD_REQUEST', 'route')
    refused(await test({ route: 'nope' }), 404, 'E_ROUTE_NOT_FOUND', 'route "nope" not found')
    refused(await test({ condition: 'true', endpoint: 'nope' }), 404, 'E_ENDPOINT_NOT_FOUND', 'endpoint "nope" not found')
    refused(await test({ condition: 5 }), 400, 'E_BAD_REQUEST', 'condition')
    refused(await test({ condition: 'true', extra: 1 }), 400, 'E_BAD_REQUEST', 'extra')
    refused(await test({ condition: 'true', message: { deviceId: '' } }), 400, 'E_BAD_REQUEST', 'message.deviceId')
    refused(await test({ condition: 'true', message: { properties: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`p${i}`, 'v'])) } }), 400, 'E_BAD_REQUEST', 'at most 64 properties')
    refused(await test({ condition: 'true', message: { properties: { p: 'v'.repeat(4097) } } }), 400, 'E_BAD_REQUEST', 'message.properties.p')
    refused(await test({ condition: 'true', message: { properties: { p: 5 } } }), 400, 'E_BAD_REQUEST', 'message.properties.p')
    refused(await test({ condition: 'true', twin: { tags: [] } }), 400, 'E_BAD_REQUEST', 'twin.tags')
    refused(await test('[]'), 400, 'E_BAD_REQUEST')
    refused(await test('{"condition":'), 400, 'E_BAD_REQUEST')
    // A large sample body within the limit is evaluated, not refused.
    const big = await test({ condition: 'LENGTH($body.s) > 100000', message: { body: { s: 'x'.repeat(200_000) } } })
    expect(big.status, JSON.stringify(big.body).slice(0, 200)).toBe(200)
    expect(big.body).toMatchObject({ matched: true })
  })

  it('bounds conditions: length, nesting 100,000 deep, and the largest body that fits, each with a column', async () => {
    const put = (condition: string): Promise<ApiResponse> => api(f.gw.httpUrl, 'PUT', '/api/routes/evil', { condition, endpoints: ['sink'] })
    const test = (condition: string): Promise<ApiResponse> => api(f.gw.httpUrl, 'POST', '/api/routes/test', { condition })
    const over = `a = '${'x'.repeat(4097 - 6)}'`
    expect(over).toHaveLength(4097)
    // PUT and POST /test alike: the compiler's own bound, with its column.
    refused(await put(over), 400, 'E_ROUTE_QUERY_INVALID', 'condition longer than 4096 characters (4097) at column 4097')
    refused(await test(over), 400, 'E_ROUTE_QUERY_INVALID', 'condition longer than 4096 characters (4097) at column 4097')

    for (const deep of ['('.repeat(100_000), 'NOT '.repeat(20_000) + 'true', '-'.repeat(100_000) + '1', 'LENGTH('.repeat(10_000)]) {
      refused(await put(deep), 400, 'E_ROUTE_QUERY_INVALID', `condition longer than 4096 characters (${deep.length}) at column 4097`)
      refused(await test(deep), 400, 'E_ROUTE_QUERY_INVALID', `condition longer than 4096 characters (${deep.length}) at column 4097`)
    }
    // Within the length bound the nesting bound answers, at the 65th level.
    refused(await put('('.repeat(4096)), 400, 'E_ROUTE_QUERY_INVALID', 'nesting deeper than 64 levels at column 65')
    refused(await test('NOT '.repeat(1023) + 'true'), 400, 'E_ROUTE_QUERY_INVALID', 'nesting deeper than 64 levels at column 257')
    refused(await put('-'.repeat(4095) + '1'), 400, 'E_ROUTE_QUERY_INVALID', 'nesting deeper than 64 levels at column 65')
    refused(await test('LENGTH('.repeat(585)), 400, 'E_ROUTE_QUERY_INVALID', `nesting deeper than 64 levels at column ${64 * 7 + 7}`)

    // 100,000 `NOT ` is 400 KB: over the API's body limit (twice the largest command payload plus 16 KiB).
    const limit = 2 * Math.max(f.gw.config.commands.maxMethodPayloadBytes, f.gw.config.commands.maxMessageBytes, f.gw.config.commands.maxTwinSectionBytes) + 16 * 1024
    const frame = (n: number): string => `{"condition":"${'NOT '.repeat(n)}true"}`
    refused(await api(f.gw.httpUrl, 'POST', '/api/routes/test', frame(100_000)), 413, 'E_PAYLOAD_TOO_LARGE', 'request body is too large')
    const fits = Math.floor((limit - frame(0).length) / 4)
    expect(frame(fits).length).toBeLessThanOrEqual(limit)
    refused(await api(f.gw.httpUrl, 'POST', '/api/routes/test', frame(fits + 1)), 413, 'E_PAYLOAD_TOO_LARGE')
    refused(await api(f.gw.httpUrl, 'POST', '/api/routes/test', frame(fits)), 400, 'E_ROUTE_QUERY_INVALID', `(${fits * 4 + 4}) at column 4097`)
    refused(await api(f.gw.httpUrl, 'PUT', '/api/routes/evil', `{"endpoints":["sink"],"condition":"${'('.repeat(limit - 40)}"}`), 400, 'E_ROUTE_QUERY_INVALID', /4096/)
  })

  it('takes the widest AND chain that fits (flat, not recursive) and refuses 10,000 terms by length', async () => {
    // 10,000 terms need 60,000 characters: only the length bound can answer them.
    const tenThousand = Array.from({ length: 10_000 }, () => 'a').join(' AND ')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/routes/wide', { condition: tenThousand, endpoints: ['sink'] }), 400, 'E_ROUTE_QUERY_INVALID', /4096/)
    const terms = Math.floor((4096 + 5) / 6)
    const widest = Array.from({ length: terms }, () => 'a').join(' AND ')
    expect(widest.length).toBeLessThanOrEqual(4096)
    // The widest chain of real comparisons, evaluated (and explained) on a sample.
    const comparisons = Array.from({ length: Math.floor(4096 / 13) }, (_, i) => (i % 2 === 0 ? "p = '1'" : "q <> '2'")).join(' AND ')
    expect(comparisons.length).toBeLessThanOrEqual(4096)
    const started = Date.now()
    const res = await api(f.gw.httpUrl, 'POST', '/api/routes/test', { condition: comparisons, message: { properties: { p: '1', q: '1' } } })
    expect(res.status, JSON.stringify(res.body).slice(0, 300)).toBe(200)
    expect(res.body).toMatchObject({ matched: true, value: true })
    const stored = await api(f.gw.httpUrl, 'PUT', '/api/routes/wide', { condition: widest, endpoints: ['sink'] })
    const removed = await api(f.gw.httpUrl, 'DELETE', '/api/routes/wide')
    baseline = await snapshot(f.gw)
    expect([stored.status, removed.status], JSON.stringify(stored.body)).toEqual([201, 204])
    expect(Date.now() - started).toBeLessThan(2000)
  })

  it('answers broken string literals with a column, and keeps NUL bytes and lone surrogates as data', async () => {
    const test = (condition: string): Promise<ApiResponse> => api(f.gw.httpUrl, 'POST', '/api/routes/test', { condition, message: { properties: { p: 'v' } } })
    refused(await test("p = 'abc"), 400, 'E_ROUTE_QUERY_INVALID', 'unterminated string starting at column 5')
    refused(await test('p = "abc\\\''), 400, 'E_ROUTE_QUERY_INVALID', 'unterminated string starting at column 5')
    refused(await test("p = 'a\\"), 400, 'E_ROUTE_QUERY_INVALID', 'at column 7')
    refused(await test("p = 'a\\n'"), 400, 'E_ROUTE_QUERY_INVALID', "invalid escape '\\n' in a string at column 7")
    refused(await test("p = 'a\\u12'"), 400, 'E_ROUTE_QUERY_INVALID', 'column 7')
    refused(await test('p = 1\u0000'), 400, 'E_ROUTE_QUERY_INVALID', 'at column 6')
    refused(await test('p = \ud800'), 400, 'E_ROUTE_QUERY_INVALID', 'at column 5')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/routes/evil', { condition: "p = 'abc", endpoints: ['sink'] }), 400, 'E_ROUTE_QUERY_INVALID', 'column 5')
    // Inside a literal they are characters like any other: the condition compiles and compares.
    for (const literal of ['\u0000', '\ud800', '\udfff\ud800', "\\u0000", '\\uD800']) {
      const res = await test(`p = '${literal}' OR p = 'v'`)
      expect(res.status, JSON.stringify(res.body)).toBe(200)
      expect(res.body).toMatchObject({ matched: true })
    }
    const stored = await api(f.gw.httpUrl, 'PUT', '/api/routes/odd', { condition: "p = '\u0000\ud800'", endpoints: ['sink'] })
    const read = await api(f.gw.httpUrl, 'GET', '/api/routes/odd')
    const removed = await api(f.gw.httpUrl, 'DELETE', '/api/routes/odd')
    baseline = await snapshot(f.gw)
    expect([stored.status, removed.status]).toEqual([201, 204])
    expect((read.body as { condition: string }).condition).toBe("p = '\u0000\ud800'")
  })

  it('refuses definitions past every bound with the field in the message', async () => {
    const endpoint = (extra: Record<string, unknown>): Promise<ApiResponse> => api(f.gw.httpUrl, 'PUT', '/api/endpoints/evil', { type: 'stream', topic: 'evil-out', ...extra })
    const webhook = (extra: Record<string, unknown>): Promise<ApiResponse> => api(f.gw.httpUrl, 'PUT', '/api/endpoints/evil', { type: 'webhook', url: 'http://127.0.0.1:9/hook', ...extra })
    const route = (extra: Record<string, unknown>): Promise<ApiResponse> => api(f.gw.httpUrl, 'PUT', '/api/routes/evil', { endpoints: ['sink'], ...extra })
    const enrich = (n: number, key = (i: number) => `k${i}`) => Array.from({ length: n }, (_, i) => ({ key: key(i), value: 'v' }))

    refused(await endpoint({ enrichments: enrich(11) }), 400, 'E_BAD_REQUEST', /^endpoint\.enrichments: .*10/)
    refused(await endpoint({ enrichments: enrich(3, () => 'same') }), 400, 'E_BAD_REQUEST', 'enrichment keys must be unique')
    for (const key of ['device-id', 'enqueued-time', 'content-type', 'content-encoding', 'message-id', 'mqtt-retain']) {
      refused(await endpoint({ enrichments: [{ key, value: 'forged' }] }), 400, 'E_BAD_REQUEST', 'may not replace a header the gateway sets')
    }
    for (const key of ['', 'a b', 'k'.repeat(65), 'é', 'x\r\ny', '__proto__/x']) {
      refused(await endpoint({ enrichments: [{ key, value: 'v' }] }), 400, 'E_BAD_REQUEST', /^endpoint\.enrichments\.0\.key: /)
    }
    for (const value of ['$twin.', '$twin', '$twin.tags.', '$twin.foo.bar', '$twin.properties.x', '$twin.tags.a[', '$twin.tags.a OR 1', '$body.x', '$', '']) {
      refused(await endpoint({ enrichments: [{ key: 'k', value }] }), 400, 'E_BAD_REQUEST', /^endpoint\.enrichments\.0\.value: /)
    }
    refused(await endpoint({ enrichments: [{ key: 'k', value: 'v'.repeat(129) }] }), 400, 'E_BAD_REQUEST', /^endpoint\.enrichments\.0\.value: /)
    refused(await endpoint({ enrichments: [{ key: 'k', value: 'v', extra: 1 }] }), 400, 'E_BAD_REQUEST', 'extra')

    refused(await route({ endpoints: Array.from({ length: 11 }, (_, i) => `e${i}`) }), 400, 'E_BAD_REQUEST', /^route\.endpoints: .*10/)
    refused(await route({ endpoints: ['sink', 'sink'] }), 400, 'E_BAD_REQUEST', 'a route names each endpoint once')
    refused(await route({ endpoints: [] }), 400, 'E_BAD_REQUEST', /^route\.endpoints: /)
    refused(await route({ endpoints: ['nope'] }), 404, 'E_ENDPOINT_NOT_FOUND', 'route "evil" names endpoint "nope", which does not exist')
    refused(await route({ extra: true }), 400, 'E_BAD_REQUEST', 'extra')
    refused(await endpoint({ url: 'http://127.0.0.1/' }), 400, 'E_BAD_REQUEST', 'url')
    for (const [field, value] of [['condition', 5], ['endpoints', 'sink'], ['enabled', 'yes'], ['source', 'twins'], ['source', null]] as const) {
      refused(await route({ [field]: value }), 400, 'E_BAD_REQUEST', `route.${field}: `)
    }
    for (const [field, value] of [['maxAttempts', '3'], ['maxAttempts', 1.5], ['maxAttempts', 0], ['backoffMs', -1], ['partitions', 1e9], ['topic', ['a']]] as const) {
      refused(await endpoint({ [field]: value }), 400, 'E_BAD_REQUEST', `endpoint.${field}: `)
    }
    refused(await endpoint({ backoffMs: 1000, maxBackoffMs: 10 }), 400, 'E_BAD_REQUEST', 'maxBackoffMs must be at least backoffMs')
    refused(await webhook({ timeoutMs: 50 }), 400, 'E_BAD_REQUEST', 'endpoint.timeoutMs: ')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/endpoints/evil', { type: 'ftp', url: 'ftp://x/' }), 400, 'E_BAD_REQUEST', 'endpoint.type: ')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/endpoints/evil', {}), 400, 'E_BAD_REQUEST', 'endpoint.type: ')
    refused(await api(f.gw.httpUrl, 'PUT', '/api/endpoints/evil', '{"type":"stream","topic":"x-out","__proto__":{"polluted":1}}'), 400, 'E_BAD_REQUEST')
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()

    for (const url of ['file:///etc/passwd', 'javascript:alert(1)', 'data:text/plain,x', 'ftp://127.0.0.1/x', 'ws://127.0.0.1/x', '//127.0.0.1/x', 'http://', 'not a url']) {
      refused(await webhook({ url }), 400, 'E_BAD_REQUEST', 'endpoint.url: url must be an http:// or https:// URL')
    }
    for (const url of ['http://u:p4ssw0rd@127.0.0.1/', 'http://user@127.0.0.1/', 'https://:p4ssw0rd@127.0.0.1/']) {
      const res = await webhook({ url })
      refused(res, 400, 'E_BAD_REQUEST', 'endpoint.url: url may not carry credentials; give them as authHeader')
      expect(JSON.stringify(res.body), 'the refusal does not echo the password').not.toContain('p4ssw0rd')
    }
    refused(await webhook({ url: `http://127.0.0.1/${'a'.repeat(5 * 1024)}` }), 400, 'E_BAD_REQUEST', /^endpoint\.url: .*2048/)

    for (const topic of ['telemetry', 'device-events', 'routing-deadletter']) {
      refused(await endpoint({ topic }), 400, 'E_BAD_REQUEST', `endpoint.topic: "${topic}" is a topic the gateway writes itself`)
    }
    for (const topic of ['../x', 'a/b', 't'.repeat(300), '', 'tópico', 'a b']) {
      refused(await endpoint({ topic }), 400, 'E_BAD_REQUEST', 'endpoint.topic: topic names are 1 to 200 of A-Z a-z 0-9 . _ -')
    }
  })

  it('refuses Kafka-illegal stream topics "." and ".." (a definition the router could never run on Kafka)', async () => {
    const answers: Record<string, number> = {}
    for (const topic of ['.', '..']) {
      const res = await api(f.gw.httpUrl, 'PUT', '/api/endpoints/dots', { type: 'stream', topic })
      answers[topic] = res.status
      if (res.status < 300) await api(f.gw.httpUrl, 'DELETE', '/api/endpoints/dots')
    }
    baseline = await snapshot(f.gw)
    expect(answers).toEqual({ '.': 400, '..': 400 })
  })

  it('refuses bodies nested 10,000 deep on PUT and on POST /api/routes/test with 400, not a stack overflow', async () => {
    const deep = (levels: number, open = '{"a":', close = '}'): string => `${open.repeat(levels)}1${close.repeat(levels)}`
    const bodies = {
      putRoute: ['PUT', '/api/routes/evil', `{"endpoints":["sink"],"condition":"true","x":${deep(10_000)}}`],
      putRouteArrays: ['PUT', '/api/routes/evil', `{"endpoints":${deep(10_000, '[', ']')}}`],
      putEndpoint: ['PUT', '/api/endpoints/evil', `{"type":"stream","topic":"x-out","enrichments":${deep(10_000, '[', ']')}}`],
      testBody: ['POST', '/api/routes/test', `{"condition":"true","message":{"body":${deep(10_000)}}}`],
      testTwin: ['POST', '/api/routes/test', `{"condition":"$twin.tags.a = 1","twin":{"tags":${deep(10_000)}}}`],
    } as const
    const answers: Record<string, [number, string | undefined]> = {}
    for (const [what, [method, path, body]] of Object.entries(bodies)) {
      const res = await api(f.gw.httpUrl, method, path, body)
      answers[what] = [res.status, errorCode(res)]
      expect(JSON.stringify(res.body)).not.toMatch(/call stack|RangeError/)
    }
    expect(answers).toEqual(Object.fromEntries(Object.keys(bodies).map((k) => [k, [400, 'E_BAD_REQUEST']])))
    // POST /test names the bound; 64 levels still pass.
    refused(await api(f.gw.httpUrl, 'POST', '/api/routes/test', bodies.testBody[2]), 400, 'E_BAD_REQUEST', '64 levels deep (http.maxJsonDepth)')
    const fine = await api(f.gw.httpUrl, 'POST', '/api/routes/test', `{"condition":"$body.a.a = 1","message":{"body":${deep(60)}}}`)
    expect(fine.status, JSON.stringify(fine.body)).toBe(200)
  })
})
