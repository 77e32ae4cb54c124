/**
 * The gateway's metrics, registered on the ops port's registry: connections, closes by code, frames
 * in and refused, deltas sent and conflated, and the bet relay's status lookups.
 */

import { Counter, Gauge, type Registry } from 'prom-client'
import type { BetRelay } from './bets.ts'

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>

export function createGatewayMetrics(registry: Registry) {
  return {
    connections: new Gauge({
      name: 'gateway_connections',
      help: 'open WebSocket connections',
      registers: [registry],
    }),
    closes: new Counter({
      name: 'gateway_closes_total',
      help: 'connections the gateway closed, by close code',
      labelNames: ['code'],
      registers: [registry],
    }),
    framesIn: new Counter({
      name: 'gateway_frames_in_total',
      help: 'frames received',
      registers: [registry],
    }),
    refused: new Counter({
      name: 'gateway_frames_refused_total',
      help: 'frames answered with an error, by code',
      labelNames: ['code'],
      registers: [registry],
    }),
    deltas: new Counter({
      name: 'gateway_deltas_sent_total',
      help: 'deltas written to sockets',
      registers: [registry],
    }),
    conflated: new Counter({
      name: 'gateway_deltas_conflated_total',
      help: 'deltas skipped for lagging clients (they get a fresh snapshot instead)',
      registers: [registry],
    }),
  }
}

/** The relay's lookups and the lost statuses they recovered (gateway/bets.ts), read when scraped. */
export function registerRelayMetrics(registry: Registry, relay: BetRelay): void {
  const counters = [
    ['gateway_status_lookups_total', 'status lookups sent for overdue statuses', 'lookups'],
    [
      'gateway_statuses_recovered_total',
      'bet statuses passed on from a lookup (lost on the way)',
      'recovered',
    ],
    [
      'gateway_placements_hedged_total',
      'placements sent to a second API node after the hedge delay',
      'hedged',
    ],
    [
      'gateway_hedges_answered_total',
      'hedged placements whose answer came from the second API node',
      'hedgesAnswered',
    ],
    [
      'gateway_server_stalls_total',
      "times the gateway's server answered nothing for 500 ms while its second connection's answered",
      'stalls',
    ],
  ] as const
  for (const [name, help, key] of counters)
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(relay.stats()[key])
      },
    })
}
