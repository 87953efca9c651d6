/**
 * Elements built from text only. Everything a device sends (ids, property names and values,
 * payloads) reaches the page through these helpers as text nodes and attribute values, never as
 * HTML: there is no innerHTML anywhere in the console.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value)
    else if (name === 'class') el.className = value
    else if (name === 'value') el.value = value
    else el.setAttribute(name, value === true ? '' : String(value))
  }
  append(el, children)
  return el
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue
    el.append(child instanceof Node ? child : document.createTextNode(String(child)))
  }
}

/** Replace what an element holds. */
export function fill(el, ...children) {
  el.replaceChildren()
  append(el, children)
  return el
}

export function table(headers, rows, empty = 'nothing yet') {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('table', {}, h('thead', {}, h('tr', {}, headers.map((x) => h('th', {}, x)))), h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c) => h('td', {}, c))))))
}

/** A message line under a form: errors show their code, so that a refusal is never swallowed. */
export function status(el, kind, text) {
  el.className = `status ${kind}`
  el.textContent = text
}

export function errorText(err) {
  return err && err.code ? `${err.code}: ${err.message}` : String(err && err.message ? err.message : err)
}

/** JSON pretty-printed when it parses, else the text as it came. */
export function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2)
  } catch {
    return text
  }
}

export function time(ms) {
  return new Date(Number(ms)).toLocaleTimeString()
}

/**
 * Run `refresh` now and every `ms`; a failure is shown in `line` (with its code) until the next
 * round succeeds. Returns the view's { stop() }.
 */
export function every(ms, line, refresh) {
  const round = async () => {
    try {
      await refresh()
      if (line.classList.contains('error')) status(line, '', '')
    } catch (err) {
      status(line, 'error', errorText(err))
    }
  }
  void round()
  const timer = setInterval(round, ms)
  return { stop: () => clearInterval(timer) }
}
