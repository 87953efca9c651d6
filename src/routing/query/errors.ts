/**
 * The one way the query compiler fails: E_ROUTE_QUERY_INVALID with a 1-based column.
 * The column counts UTF-16 code units from the start of the condition text, newlines included
 * (route conditions are one logical line; the admin UI shows them in a single text field).
 */
import { GatewayError } from '../../errors/catalogue.js'

/** Throwable error for a condition that does not parse or compile. `offset` is 0-based. */
export function queryError(message: string, offset: number, extra?: Record<string, unknown>): GatewayError {
  const column = offset + 1
  return new GatewayError('E_ROUTE_QUERY_INVALID', message.replace('{column}', `column ${column}`), {
    column,
    ...extra,
  })
}
