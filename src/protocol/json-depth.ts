/**
 * JSON that crosses the edge (twin patches, C2D and method payloads) is parsed iteratively by
 * V8, but JSON.stringify, merges and validators recurse: a payload nested 5,000 levels deep
 * overflows the stack in any of them. This walk is iterative and stops at the first level too
 * deep; run it before anything recursive sees the value.
 *
 * Levels are counted below the root: `{"a":1}` is 0 levels deep, `{"a":{"b":1}}` 1, `[[1]]` 1.
 */
export function nestingExceeds(value: unknown, maxDepth: number): boolean {
  const stack: Array<{ value: unknown; level: number }> = [{ value, level: 0 }]
  while (stack.length > 0) {
    const { value: v, level } = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child !== 'object' || child === null) continue
      if (level + 1 > maxDepth) return true
      stack.push({ value: child, level: level + 1 })
    }
  }
  return false
}
