import { describe, expect, it } from 'vitest'
import { compileQuery, parseTwinPath } from '../../../src/routing/query/index.js'
import { message, type PlainMessage } from './query-message.js'

function run(text: string, plain: PlainMessage = {}): unknown {
  return compileQuery(text).evaluate(message(plain))
}

/** The message body of the example on "IoT Hub message routing query syntax" (Microsoft Learn). */
const WEATHER = {
  Weather: {
    Temperature: 50,
    Time: '2017-03-09T00:00:00.000Z',
    PrevTemperatures: [20, 30, 40],
    IsEnabled: true,
    Location: { Street: 'One Microsoft Way', City: 'Redmond', State: 'WA' },
    HistoricalData: [
      { Month: 'Feb', Temperature: 40 },
      { Month: 'Jan', Temperature: 30 },
    ],
  },
}

/** The device twin of the same page (its $metadata left out). */
const TWIN = {
  tags: { deploymentLocation: { building: '43', floor: '1' } },
  desired: { telemetryConfig: { sendFrequency: '5m' }, $version: 1 },
  reported: { telemetryConfig: { sendFrequency: '5m', status: 'success' }, batteryLevel: 55, $version: 4 },
}

const JSON_MESSAGE: PlainMessage = {
  system: { contentType: 'application/json', contentEncoding: 'UTF-8', connectionDeviceId: 'dev1' },
  app: { processingPath: 'hot', Status: 'Active' },
  body: WEATHER,
  twin: TWIN,
}

describe('IoT Hub documented examples', () => {
  // Each condition below is quoted from Microsoft Learn, "IoT Hub message routing query syntax".
  it.each([
    "$contentEncoding = 'UTF-8'",
    "processingPath = 'hot'",
    "$contentEncoding = 'UTF-8' AND processingPath = 'hot'",
    "$body.Weather.HistoricalData[0].Month = 'Feb'",
    '$body.Weather.Temperature = 50 AND $body.Weather.IsEnabled',
    'length($body.Weather.Location.State) = 2',
    "$body.Weather.Temperature = 50 AND processingPath = 'hot'",
    "$twin.properties.desired.telemetryConfig.sendFrequency = '5m'",
    "$body.Weather.Temperature = 50 AND $twin.properties.desired.telemetryConfig.sendFrequency = '5m'",
  ])('%s matches the documented message', (text) => {
    expect(run(text, JSON_MESSAGE)).toBe(true)
  })

  it('$body[0] = \'Feb\' is accepted and undefined ("queries on the entire body reference" are not supported)', () => {
    expect(run("$body[0] = 'Feb'", JSON_MESSAGE)).toBeUndefined()
    expect(run('IS_DEFINED($body)', JSON_MESSAGE)).toBe(false)
  })

  it('filters twin change notifications on their body (the page\'s two notes)', () => {
    const notification: PlainMessage = { body: { properties: { desired: { telemetryConfig: { sendFrequency: 12 } } } } }
    expect(run('$body.properties.desired.telemetryConfig.sendFrequency > 10', notification)).toBe(true)
    expect(run('is_defined($body.properties.desired.telemetryConfig.sendFrequency)', notification)).toBe(true)
    expect(run('is_defined($body.properties.desired.telemetryConfig.sendFrequency)', { body: { properties: {} } })).toBe(false)
  })

  it('$twin.tags.deploymentLocation.floor = 1 compares a number: true for floor 1, undefined for the sample\'s string "1"', () => {
    expect(run('$twin.tags.deploymentLocation.floor = 1', { twin: { tags: { deploymentLocation: { floor: 1 } } } })).toBe(true)
    // The page's sample twin holds "floor": "1"; IoT Hub does not convert types, so no match.
    expect(run('$twin.tags.deploymentLocation.floor = 1', JSON_MESSAGE)).toBeUndefined()
    expect(run("$twin.tags.deploymentLocation.floor = '1'", JSON_MESSAGE)).toBe(true)
  })

  it('reads the system properties and reported twin properties', () => {
    expect(run("$contentType = 'application/json' AND $contentEncoding = 'UTF-8'", JSON_MESSAGE)).toBe(true)
    expect(run("$connectionDeviceId = 'dev1'", JSON_MESSAGE)).toBe(true)
    expect(run("$connectionDeviceId = 'dev2'", JSON_MESSAGE)).toBe(false)
    expect(run('$twin.properties.reported.batteryLevel > 50', JSON_MESSAGE)).toBe(true)
    expect(run('$twin.properties.desired.$version = 1', JSON_MESSAGE)).toBe(true)
    expect(run("Status = 'Active'", JSON_MESSAGE)).toBe(true)
  })

  it('reads $messageId, $correlationId and the enqueued time as $enqueuedTime and bare enqueuedTime', () => {
    const at = '2017-05-08T18:55:31.8514657Z'
    const m: PlainMessage = { system: { messageId: 'm1', correlationId: 'c1', enqueuedTime: at } }
    expect(run("$messageId = 'm1' AND $correlationId = 'c1'", m)).toBe(true)
    expect(run(`$enqueuedTime = '${at}'`, m)).toBe(true)
    expect(run(`enqueuedTime = '${at}'`, m)).toBe(true)
    // A bare name is an application property first; only when there is none is it the system one.
    expect(run("enqueuedTime = 'mine'", { ...m, app: { enqueuedTime: 'mine' } })).toBe(true)
  })

  it('IS_DEFINED($body.x)', () => {
    expect(run('IS_DEFINED($body.x)', { body: { x: 0 } })).toBe(true)
    expect(run('IS_DEFINED($body.x)', { body: { x: null } })).toBe(true)
    expect(run('IS_DEFINED($body.x)', { body: {} })).toBe(false)
  })
})

describe('empty and constant conditions', () => {
  it('an empty or blank condition is true', () => {
    expect(run('')).toBe(true)
    expect(run(' \n\t ')).toBe(true)
  })

  it('true matches everything, false nothing', () => {
    expect(run('true')).toBe(true)
    expect(run('false')).toBe(false)
  })
})

describe('undefined semantics', () => {
  it('a missing property is undefined, and so is any comparison with it (even !=)', () => {
    expect(run('x = 1')).toBeUndefined()
    expect(run("x != 'a'")).toBeUndefined()
    expect(run('$body.x = 1', { body: {} })).toBeUndefined()
    expect(run('$twin.tags.x = 1')).toBeUndefined() // no twin
    expect(run('$body.x = 1')).toBeUndefined() // body not JSON
  })

  it('values of different types compare as undefined', () => {
    expect(run("'1' = 1")).toBeUndefined()
    expect(run('true = 1')).toBeUndefined()
    expect(run('$body.a = 1', { body: { a: [1] } })).toBeUndefined()
    expect(run('$body.a = $body.a', { body: { a: { b: 1 } } })).toBeUndefined()
    // Application properties are strings: no conversion, use AS_NUMBER.
    expect(run('temperature > 30', { app: { temperature: '35' } })).toBeUndefined()
    expect(run('AS_NUMBER(temperature) > 30', { app: { temperature: '35' } })).toBe(true)
  })

  it('a non-boolean result is returned raw (the router counts it as undefined)', () => {
    expect(run('1 + 2')).toBe(3)
    expect(run("'hot'")).toBe('hot')
    expect(run('$body.Weather', { body: WEATHER })).toEqual(WEATHER.Weather)
  })

  it('arithmetic on non-numbers is undefined', () => {
    expect(run("'a' + 1")).toBeUndefined()
    expect(run("'a' + 'b'")).toBeUndefined()
    expect(run('-$body.s', { body: { s: 'x' } })).toBeUndefined()
    expect(run('null * 2')).toBeUndefined()
  })

  it('null is a value: null = null, but ordering null is undefined', () => {
    const m: PlainMessage = { body: { n: null } }
    expect(run('$body.n = null', m)).toBe(true)
    expect(run('$body.n != null', m)).toBe(false)
    expect(run('$body.n = 0', m)).toBeUndefined()
    expect(run('$body.n <= null', m)).toBeUndefined()
    expect(run('$body.missing = null', m)).toBeUndefined()
  })

  it('NOT undefined is undefined; NOT of a non-boolean too', () => {
    expect(run('NOT x = 1')).toBeUndefined()
    expect(run('NOT 1')).toBeUndefined()
    expect(run('NOT undefined')).toBeUndefined()
    expect(run('NOT false')).toBe(true)
  })

  const T = 'true'
  const F = 'false'
  const U = 'undefined'
  it.each([
    [T, T, true, true], [T, F, false, true], [T, U, undefined, true],
    [F, T, false, true], [F, F, false, false], [F, U, false, undefined],
    [U, T, undefined, true], [U, F, false, undefined], [U, U, undefined, undefined],
  ])('three-valued logic: %s AND/OR %s', (a, b, and, or) => {
    expect(run(`${a} AND ${b}`)).toBe(and)
    expect(run(`${a} OR ${b}`)).toBe(or)
    // A non-boolean operand counts as undefined, and chains of three follow the same table.
    expect(run(`${a.replace(U, '7')} AND ${b.replace(U, "'s'")} AND true`)).toBe(and)
    expect(run(`${a.replace(U, '7')} OR ${b.replace(U, "'s'")} OR false`)).toBe(or)
  })
})

describe('case-insensitivity', () => {
  it('keywords and constants', () => {
    expect(run('true and true')).toBe(true)
    expect(run('false Or TRUE')).toBe(true)
    expect(run('not FALSE aNd True')).toBe(true)
    expect(run('$body.n = Null', { body: { n: null } })).toBe(true)
  })

  it('function names', () => {
    expect(run('is_defined($body.a)', { body: { a: 1 } })).toBe(true)
    expect(run('Is_Defined($body.a)', { body: { a: 1 } })).toBe(true)
    expect(run("lower('A') = 'a'")).toBe(true)
  })

  it('application and system property names', () => {
    const m: PlainMessage = { app: { processingPath: 'hot' }, system: { contentType: 'application/json' } }
    expect(run("ProcessingPath = 'hot'", m)).toBe(true)
    expect(run("PROCESSINGPATH = 'hot'", m)).toBe(true)
    expect(run("$CONTENTTYPE = 'application/json' AND $contenttype = 'application/json'", m)).toBe(true)
  })

  it('$body and $twin path names: exact spelling first, then any case', () => {
    expect(run("$BODY.weather.historicaldata[0].MONTH = 'Feb'", { body: WEATHER })).toBe(true)
    expect(run("$Twin.Tags.DeploymentLocation.Building = '43'", JSON_MESSAGE)).toBe(true)
    expect(run('$twin.PROPERTIES.Reported.batterylevel = 55', JSON_MESSAGE)).toBe(true)
    const both: PlainMessage = { body: { a: 1, A: 2 } }
    expect(run('$body.a = 1 AND $body.A = 2', both)).toBe(true)
  })

  it('values compare case-sensitively', () => {
    expect(run("processingPath = 'HOT'", { app: { processingPath: 'hot' } })).toBe(false)
  })
})

describe('$ names', () => {
  it('an unknown $name is the application property of that name (system first, then application)', () => {
    expect(run("$custom = 'x'", { app: { $custom: 'x' } })).toBe(true)
    expect(run("$contentType = 'from-app'", { app: { $contentType: 'from-app' } })).toBe(true)
    expect(run("$contentType = 'sys'", { app: { $contentType: 'from-app' }, system: { contentType: 'sys' } })).toBe(true)
  })

  it('hyphens join $-names and path steps, never bare names; a digit after - subtracts', () => {
    expect(run("$dt-subject = 'thermostat1'", { app: { '$dt-subject': 'thermostat1' } })).toBe(true)
    expect(run('$body.my-key = 1', { body: { 'my-key': 1 } })).toBe(true)
    expect(run('$body.a-1 = 4', { body: { a: 5 } })).toBe(true)
    expect(run('$body.a - $body.b = 2', { body: { a: 5, b: 3 } })).toBe(true)
    expect(run('a-b = 1', { app: { a: 'x', b: 'y' } })).toBeUndefined() // a minus b, both strings
  })
})

describe('operators and literals', () => {
  it.each([
    ['1 = 1', true], ['1 != 1', false], ['1 <> 2', true], ['1 < 2', true], ['2 > 1', true],
    ['2 <= 2', true], ['3 >= 4', false], ["'a' < 'b'", true], ["'B' < 'a'", true], ["'abc' = 'ABC'", false],
    ["'b' >= 'abc'", true], ['false < true', true], ['true = true', true],
    ['1 + 2 * 3 = 7', true], ['(1 + 2) * 3 = 9', true], ['10 - 2 - 3 = 5', true], ['8 / 2 / 2 = 2', true],
    ['2 * 3 % 4 = 2', true], ['5 % 3 = 2', true], ['-5 % 3 = -2', true], ['7.5 % 2 = 1.5', true],
    ['-2 * 3 = -6', true], ['- -2 = 2', true], ['-(1 + 2) = -3', true], ['1 - -1 = 2', true],
    ['1.5e2 = 150', true], ['1E-2 = 0.01', true], ['0x1F = 31', true], ['007 = 7', true],
    ['"double" = \'double\'', true], ["'it\\'s' = \"it's\"", true], ['"say \\"hi\\"" = \'say "hi"\'', true],
    ["'\\u0041' = 'A'", true], ["LENGTH('a\\\\b') = 3", true],
  ])('%s', (text, expected) => {
    expect(run(text)).toBe(expected)
  })

  it('precedence: NOT binds looser than comparison, AND tighter than OR', () => {
    const m: PlainMessage = { app: { a: '1', b: '2' } }
    expect(run("NOT a = '1' AND b = '2'", m)).toBe(false) // (NOT (a = '1')) AND (b = '2')
    expect(run("NOT a = '2' AND b = '2'", m)).toBe(true)
    expect(run('true OR false AND false')).toBe(true) // true OR (false AND false)
    expect(run('(true OR false) AND false')).toBe(false)
  })

  it('division or % by zero and overflow are undefined', () => {
    expect(run('1 / 0')).toBeUndefined()
    expect(run('1 / 0 = 1')).toBeUndefined()
    expect(run('5 % 0')).toBeUndefined()
    expect(run('1e308 * 10')).toBeUndefined()
    expect(run('0 / 5 = 0')).toBe(true)
  })

  it('a long flat chain stays shallow (no deep recursion at compile or evaluation time)', () => {
    expect(run(`${Array(1000).fill('1').join(' + ')} = 1000`)).toBe(true)
    expect(run(Array(400).fill('true').join(' AND '))).toBe(true)
    expect(run(`${Array(400).fill('false').join(' OR ')} OR true`)).toBe(true)
  })
})

describe('paths', () => {
  it('indexes arrays and nests', () => {
    expect(run('$body.Weather.PrevTemperatures[2] = 40', { body: WEATHER })).toBe(true)
    expect(run('$body.Weather.HistoricalData[1].Temperature = 30', { body: WEATHER })).toBe(true)
    expect(run('IS_DEFINED($body.Weather.PrevTemperatures[3])', { body: WEATHER })).toBe(false)
    expect(run('$body.m[0][1] = 2', { body: { m: [[1, 2]] } })).toBe(true)
  })

  it('an index on an object, or a name on an array or a primitive, is undefined', () => {
    expect(run('IS_DEFINED($body.Weather[0])', { body: WEATHER })).toBe(false)
    expect(run('IS_DEFINED($body.Weather.PrevTemperatures.length)', { body: WEATHER })).toBe(false)
    expect(run('IS_DEFINED($body.Weather.Temperature.x)', { body: WEATHER })).toBe(false)
  })

  it('reads own JSON properties only, never inherited ones', () => {
    expect(run('IS_DEFINED($body.constructor)', { body: {} })).toBe(false)
    expect(run('IS_DEFINED($body.toString)', { body: {} })).toBe(false)
    expect(run('IS_DEFINED($body.__proto__)', { body: {} })).toBe(false)
    expect(run('$body.__proto__ = 5', { body: JSON.parse('{"__proto__": 5}') })).toBe(true)
  })

  it('keywords are plain names after a dot', () => {
    expect(run('$body.not = 1 AND $body.AND = 2', { body: { not: 1, AND: 2 } })).toBe(true)
  })
})

describe('usesBody / usesTwin', () => {
  it.each([
    ["processingPath = 'hot'", false, false],
    ['$body.a = 1', true, false],
    ["$twin.tags.a = 'x'", false, true],
    ['NOT (LENGTH($body.s) = 1 OR -$twin.tags.n + 1 > 0)', true, true],
    ['', false, false],
  ])('%s', (text, body, twin) => {
    const q = compileQuery(text)
    expect([q.usesBody, q.usesTwin]).toEqual([body, twin])
    expect(q.text).toBe(text)
  })
})

describe('parseTwinPath (enrichment values)', () => {
  const twin = { tags: TWIN.tags, properties: { desired: TWIN.desired, reported: TWIN.reported } }

  it('compiles tags and desired / reported paths, case-insensitively', () => {
    expect(parseTwinPath('$twin.tags.deploymentLocation.building')?.(twin)).toBe('43')
    expect(parseTwinPath('$twin.tags.deploymentLocation')?.(twin)).toEqual({ building: '43', floor: '1' })
    expect(parseTwinPath('$twin.properties.desired.telemetryConfig.sendFrequency')?.(twin)).toBe('5m')
    expect(parseTwinPath(' $TWIN.Properties.Reported.BatteryLevel ')?.(twin)).toBe(55)
    expect(parseTwinPath('$twin.tags.nothing')?.(twin)).toBeUndefined()
    expect(parseTwinPath('$twin.tags.x')?.(undefined)).toBeUndefined()
  })

  it('is null for anything that is not a twin path', () => {
    for (const text of ['$body.a', 'static value', '$twin', '$twin.tags.a = 1', '$twin.other', '$twin.tags.', '', '$iothubname']) {
      expect(parseTwinPath(text), text).toBeNull()
    }
  })
})
