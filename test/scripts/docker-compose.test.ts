// Proves, without Docker, that docker-compose.yml describes what the project has: every node
// service runs an entry point that exists, its environment (the compose file's over the
// Dockerfile's) is a valid configuration for that entry point, checked by the same parser the node
// runs and names only variables the node reads, node ids are unique, and the nodes' server list names the compose file's three nats-servers.

import { existsSync, readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { options as gateway } from '../../gateway/options.ts'
import { options as api } from '../../nodes/api/options.ts'
import { type OptionsSchema, parseConfig } from '../../nodes/fabric/config.ts'
import { commonOptions } from '../../nodes/fabric/node-main.ts'
import { options as settlement } from '../../nodes/settlement/options.ts'
import { options as trader } from '../../nodes/trader/options.ts'

const SCHEMAS: Readonly<Record<string, OptionsSchema>> = {
  'nodes/trader/main.ts': trader,
  'nodes/api/main.ts': api,
  'nodes/settlement/main.ts': settlement,
  'gateway/main.ts': gateway,
}

/** Variables the image sets for Node.js itself, not for the nodes' options. */
const NOT_OPTIONS = ['NODE_ENV']

interface Service {
  readonly image?: string
  readonly command?: readonly string[]
  readonly environment?: Readonly<Record<string, string | number | boolean>>
}

/** `ENV A=1 B=2` lines of a Dockerfile, as one environment. */
function dockerfileEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    if (!line.startsWith('ENV ')) continue
    for (const pair of line.slice(4).trim().split(/\s+/)) {
      const [key, ...value] = pair.split('=')
      if (key) env[key] = value.join('=')
    }
  }
  return env
}

/** Compose's `${NAME:-default}` with NAME unset, as on a machine that sets nothing. */
function interpolate(value: string | number | boolean): string {
  return String(value).replace(/\$\{\w+:-([^}]*)\}/g, '$1')
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as {
  services: Record<string, Service>
}
const imageEnv = dockerfileEnv(readFileSync('docker/Dockerfile', 'utf8'))
const services = Object.entries(compose.services)
const nodes = services.filter(([, service]) => service.command?.[0]?.endsWith('.ts'))
const servers = services.filter(([, service]) => service.image?.startsWith('nats'))

t.test('every node service runs an entry point with a valid configuration', async (t) => {
  t.ok(nodes.length >= 6, `${nodes.length} node services`)
  for (const [name, service] of nodes) {
    const entry = service.command?.[0] ?? ''
    const schema = SCHEMAS[entry]
    t.ok(schema !== undefined && existsSync(entry), `${name} runs ${entry}`)
    const env = { ...imageEnv }
    for (const [key, value] of Object.entries(service.environment ?? {})) env[key] = interpolate(value)
    const full = { ...commonOptions, ...schema }
    t.doesNotThrow(() => parseConfig(full, { argv: [], env }), `${name}'s environment`)
    // A misspelt optional variable would be ignored silently: every name must be one the node reads.
    const known = new Set([...Object.values(full).map((spec) => spec.env), ...NOT_OPTIONS])
    t.same(
      Object.keys(env).filter((key) => !known.has(key)),
      [],
      `${name} sets only variables it reads`,
    )
  }
})

t.test('node ids are unique and the server list names the three nats-servers', async (t) => {
  const ids = nodes.map(([, service]) => service.environment?.FABRIC_NODE_ID)
  t.equal(new Set(ids).size, nodes.length, `ids: ${ids.join(', ')}`)
  t.equal(servers.length, 3, 'three nats-servers')
  for (const [name, service] of nodes) {
    const list = String(service.environment?.FABRIC_NATS_SERVERS ?? '')
    const hosts = list.split(',').map((url) => new URL(url).hostname)
    t.same(hosts.sort(), servers.map(([server]) => server).sort(), `${name} knows every server`)
  }
  t.ok(existsSync('docker/nats.conf'), 'the servers config the compose file mounts')
})
