import { GatewayError } from '../errors/catalogue.js'

/**
 * The errors of the route and analytics stores, built in one place so that every backend
 * (SQLite, PostgreSQL) answers with the same code, message and details.
 */

export function endpointNotFound(name: string, route?: string): GatewayError {
  const message = route === undefined ? `endpoint "${name}" not found` : `route "${route}" names endpoint "${name}", which does not exist`
  return new GatewayError('E_ENDPOINT_NOT_FOUND', message, { endpoint: name, ...(route === undefined ? {} : { route }) })
}

export function endpointInUse(name: string, route: string): GatewayError {
  return new GatewayError('E_ENDPOINT_IN_USE', `endpoint "${name}" is used by route "${route}"`, { endpoint: name, route })
}

export function routeNotFound(name: string): GatewayError {
  return new GatewayError('E_ROUTE_NOT_FOUND', `route "${name}" not found`, { route: name })
}

export function aggregateNotFound(name: string, rule?: string): GatewayError {
  const message = rule === undefined ? `aggregate "${name}" not found` : `alert rule "${rule}" reads aggregate "${name}", which does not exist`
  return new GatewayError('E_AGGREGATE_NOT_FOUND', message, { aggregate: name, ...(rule === undefined ? {} : { rule }) })
}

export function aggregateInUse(name: string, rule: string): GatewayError {
  return new GatewayError('E_AGGREGATE_IN_USE', `aggregate "${name}" is read by alert rule "${rule}"`, { aggregate: name, rule })
}

export function alertRuleNotFound(name: string): GatewayError {
  return new GatewayError('E_ALERT_RULE_NOT_FOUND', `alert rule "${name}" not found`, { rule: name })
}
