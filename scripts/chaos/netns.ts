/**
 * Network faults for chaos runs: a lab where each nats-server (or node) runs as its own host in a
 * network namespace, joined to a bridge in the root namespace by a veth pair. Partitions are iptables
 * DROP rules inside the hosts' namespaces, delay and loss are tc netem on a host's veth.
 *
 *   root namespace ── bridge <lab>br (10.231.x.1/24) ─┬─ veth ── namespace <lab>-n1 (10.231.x.10)
 *                                                     ├─ veth ── namespace <lab>-n2 (10.231.x.11)
 *                                                     └─ veth ── namespace <lab>-n3 (10.231.x.12)
 *
 * The root namespace holds an address on the bridge, so the processes running there (the test runner,
 * the chaos runner) reach every host, and partitions filter only traffic between hosts: each host's
 * iptables sees its own INPUT and OUTPUT, so no bridge netfilter is needed to cut two hosts apart.
 *
 * It needs root, `ip` and `tc` (iproute2) and `iptables`. Traffic goes only to the namespaces created
 * here. Everything a lab creates is removed by destroy(), also when creation failed half-way, and by
 * a safety net on exit and on SIGINT/SIGTERM; sweepStaleLabs removes what a killed run left behind.
 * Commands are run with argument arrays, never through a shell, each with a time limit, and every
 * failure names the command and its stderr.
 */

import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import { once } from 'node:events'
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'
import { pollUntil, probeRegionStream, readOutboundGateways } from '../nats-cluster.ts'

/** Bounds one ip/iptables/tc call; they answer in milliseconds unless the kernel is wedged. */
const COMMAND_TIMEOUT_MS = 10_000
/** apt-get fetching two small packages; slow mirrors are the norm, not the exception. */
const APT_TIMEOUT_MS = 300_000
/** Linux refuses interface names longer than this (IFNAMSIZ - 1). */
const INTERFACE_NAME_CHARS_MAX = 15
/** A lab name is short so `<name><4 hex>br` and `<name><4 hex>v<index>` fit in an interface name. */
const LAB_NAME_PATTERN = /^[a-z][a-z0-9]{0,5}$/
const HOST_NAME_PATTERN = /^[a-z][a-z0-9-]{0,31}$/
/** Host addresses are .10 upwards on the lab's /24, so at most this many hosts. */
export const LAB_HOSTS_MAX = 200
const FIRST_HOST_OCTET = 10
/** Labs pick a free 10.231.x.0/24; 10.231/16 is unlikely to be used by anything else on a test box. */
const SUBNET_BASE = [10, 231] as const
/** Random tries at a free /24 before giving up; with 256 candidates this only fails on a crowded box. */
const SUBNET_TRIES_MAX = 64
/** Delete attempts for a rule inserted more than once (e.g. by a retried create). */
const RULE_DELETES_MAX = 16
const NETEM_DELAY_MS_MAX = 60_000
/** The prefix networkFaultsAvailable uses for its throwaway namespace. */
const PROBE_PREFIX = 'mbprobe'
/** The prefix chaos runs and tests use; sweepStaleLabs(DEFAULT_LAB_PREFIX) cleans after them. */
export const DEFAULT_LAB_PREFIX = 'mbl'

export type Availability = { ok: true } | { ok: false; why: string }

export interface LabOptions {
  /** 1-6 lowercase letters or digits; a 4-hex-digit suffix makes the lab's names unique. */
  name: string
  /** Host names, each a namespace: lowercase letters, digits and dashes. */
  hosts: readonly string[]
}

export interface LabHost {
  /** The namespace the host runs in. */
  readonly ns: string
  /** The host's address on the lab bridge, reachable from the root namespace. */
  readonly ip: string
}

export interface Lab {
  /** The lab's unique name: the given name plus a random suffix; every resource name starts with it. */
  readonly id: string
  readonly bridge: string
  readonly hosts: Readonly<Record<string, LabHost>>
  /** The root namespace's address on the bridge. */
  readonly rootIp: string
  /** Runs `command` inside the host's namespace (`ip netns exec` execs it, so the PID is the command's). */
  exec(host: string, command: string, args: readonly string[], options?: SpawnOptions): ChildProcess
  /** Drops all traffic between every host of `a` and every host of `b`, both ways. */
  partition(a: readonly string[], b: readonly string[]): void
  /**
   * Drops each packet between every host of `a` and every host of `b` with probability `lossPct`
   * %, both ways (iptables' statistic match on the receiving host, so no netem is needed).
   */
  lose(a: readonly string[], b: readonly string[], lossPct: number): void
  /** Removes every partition and loss rule. */
  heal(): void
  /** Delays (and optionally drops) every packet the host sends, so a round trip to it gains `ms`. */
  delay(host: string, ms: number, jitterMs?: number, lossPct?: number): void
  clearDelay(host: string): void
  /** Removes namespaces, veths, bridge and rules; safe to call twice and after a failed create. */
  destroy(): void
}

/** Thrown when an ip/iptables/tc command fails; says which and why. */
export class NetworkCommandError extends Error {
  override readonly name = 'NetworkCommandError'
}

interface CommandResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

function runCommand(command: string, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): CommandResult {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs, stdio: 'pipe' })
  if (result.error) {
    return { status: null, stdout: '', stderr: `${result.error.message}` }
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Runs a command that must succeed; returns its stdout. */
function run(command: string, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): string {
  const result = runCommand(command, args, timeoutMs)
  if (result.status !== 0) {
    const why = result.stderr.trim() || `exit status ${result.status}`
    throw new NetworkCommandError(`${command} ${args.join(' ')} failed: ${why}`)
  }
  return result.stdout
}

/** run() without blocking the event loop: for work done beside other work, e.g. a chaos run's next lab. */
function runAsync(command: string, args: readonly string[], timeoutMs = COMMAND_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    child.once('error', (error) =>
      reject(new NetworkCommandError(`${command} ${args.join(' ')}: ${error.message}`)),
    )
    child.once('close', (status) => {
      if (status === 0) return resolve(stdout)
      const why = stderr.trim() || `exit status ${status}`
      reject(new NetworkCommandError(`${command} ${args.join(' ')} failed: ${why}`))
    })
  })
}

/** Runs a cleanup command whose failure (usually "does not exist") must not stop the rest of a cleanup. */
function attempt(command: string, args: readonly string[]): boolean {
  return runCommand(command, args).status === 0
}

function onPath(command: string): boolean {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).concat(['/usr/sbin', '/sbin'])
  return dirs.some((dir) => {
    try {
      accessSync(path.join(dir, command), constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

const TOOLS = [
  { command: 'ip', debianPackage: 'iproute2' },
  { command: 'tc', debianPackage: 'iproute2' },
  { command: 'iptables', debianPackage: 'iptables' },
] as const

function missingTools(): (typeof TOOLS)[number][] {
  return TOOLS.filter((tool) => !onPath(tool.command))
}

/**
 * Whether this process can build labs and partition them: root, the three tools present, and a
 * throwaway namespace in which iptables works (a kernel without nf_tables fails here, not mid-run).
 * Delay and loss need more from the kernel; netemAvailable() tells.
 */
export function networkFaultsAvailable(): Availability {
  if (!isRoot()) return { ok: false, why: 'network faults need root (namespaces, veth, iptables, tc)' }
  const missing = missingTools()
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((tool) => tool.debianPackage))].join(' ')
    const commands = missing.map((tool) => tool.command).join(', ')
    return { ok: false, why: `missing ${commands} (Debian packages: ${packages}; see ensureNetworkTools)` }
  }
  return inProbeNamespace(['iptables', '-w', '5', '-A', 'INPUT', '-s', '127.0.0.2', '-j', 'DROP'])
}

/**
 * Whether delay() and its loss work: tc netem needs the kernel's sch_netem (CONFIG_NET_SCH_NETEM),
 * which some kernels, e.g. minimal VM kernels, leave out even though they have namespaces and iptables.
 */
export function netemAvailable(): Availability {
  const base = networkFaultsAvailable()
  if (!base.ok) return base
  const probe = inProbeNamespace(['tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'])
  if (probe.ok) return probe
  return {
    ok: false,
    why: `tc netem is unavailable (kernel built without CONFIG_NET_SCH_NETEM?): ${probe.why}`,
  }
}

/** Runs `command` in a throwaway namespace with loopback up; ok if it succeeds. */
function inProbeNamespace(command: readonly string[]): Availability {
  const ns = `${PROBE_PREFIX}${randomBytes(3).toString('hex')}`
  try {
    run('ip', ['netns', 'add', ns])
    run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'])
    run('ip', ['netns', 'exec', ns, ...command])
    return { ok: true }
  } catch (err) {
    return { ok: false, why: err instanceof Error ? err.message : String(err) }
  } finally {
    // The namespace takes its interface, rules and qdisc with it.
    attempt('ip', ['netns', 'del', ns])
  }
}

/**
 * Installs iproute2 and iptables with apt-get when `ip`, `tc` or `iptables` is missing. Root only: a
 * non-root caller gets an error rather than a sudo prompt. A stale package index is refreshed once.
 */
export function ensureNetworkTools(): void {
  const missing = missingTools()
  if (missing.length === 0) return
  const packages = [...new Set(missing.map((tool) => tool.debianPackage))]
  if (!isRoot()) throw new Error(`missing ${packages.join(' ')}, and only root may install them`)
  if (!onPath('apt-get')) throw new Error(`missing ${packages.join(' ')}, and there is no apt-get`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      env,
      timeout: APT_TIMEOUT_MS,
      encoding: 'utf8',
    })
  if (install().status === 0) return
  spawnSync('apt-get', ['update'], { env, timeout: APT_TIMEOUT_MS, stdio: 'ignore' })
  const retry = install()
  if (retry.status !== 0) {
    throw new Error(`apt-get install ${packages.join(' ')} failed: ${retry.stderr.trim().slice(-1_000)}`)
  }
}

// Safety net: a run that crashes, calls process.exit or is interrupted still removes its labs. Only
// installed while a lab exists, so it never changes how a process without labs reacts to signals.
const liveLabs = new Set<Lab>()

function destroyLiveLabs(): void {
  for (const lab of [...liveLabs]) lab.destroy()
}

function onSignal(signal: NodeJS.Signals): void {
  destroyLiveLabs()
  uninstallSafetyNet()
  // Without another listener the default action (exit) must still happen, so re-raise the signal.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
}

function installSafetyNet(): void {
  if (liveLabs.size > 0) return
  process.on('exit', destroyLiveLabs)
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
}

function uninstallSafetyNet(): void {
  if (liveLabs.size > 0) return
  process.off('exit', destroyLiveLabs)
  process.off('SIGINT', onSignal)
  process.off('SIGTERM', onSignal)
}

function validateLabOptions(options: LabOptions): void {
  if (!LAB_NAME_PATTERN.test(options.name)) {
    throw new RangeError(`lab name must match ${LAB_NAME_PATTERN}: ${JSON.stringify(options.name)}`)
  }
  const { hosts } = options
  if (hosts.length === 0 || hosts.length > LAB_HOSTS_MAX) {
    throw new RangeError(`a lab has 1 to ${LAB_HOSTS_MAX} hosts, not ${hosts.length}`)
  }
  for (const host of hosts) {
    if (!HOST_NAME_PATTERN.test(host)) {
      throw new RangeError(`host name must match ${HOST_NAME_PATTERN}: ${JSON.stringify(host)}`)
    }
  }
  if (new Set(hosts).size !== hosts.length) throw new RangeError(`host names must be distinct: ${hosts}`)
}

/** [first, last] address of a CIDR as 32-bit numbers; undefined for IPv6 or "default". */
function ipv4Range(cidr: string): [number, number] | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+)(?:\/(\d+))?$/.exec(cidr)
  if (!match) return undefined
  const octets = match.slice(1, 5).map(Number)
  const base = octets.reduce((sum, octet) => sum * 256 + octet, 0)
  const bits = Number(match[5] ?? 32)
  const size = 2 ** (32 - bits)
  const first = base - (base % size)
  return [first, first + size - 1]
}

/** Every IPv4 range the root namespace routes or holds an address in; a lab subnet must avoid them all. */
function usedRanges(): [number, number][] {
  const routes = JSON.parse(run('ip', ['-j', 'route', 'show', 'table', 'all'])) as { dst?: string }[]
  const addresses = JSON.parse(run('ip', ['-j', '-4', 'addr', 'show'])) as {
    addr_info?: { local?: string; prefixlen?: number }[]
  }[]
  const cidrs = [
    ...routes.map((route) => route.dst ?? ''),
    ...addresses.flatMap((link) => (link.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`)),
  ]
  return cidrs.flatMap((cidr) => {
    const range = ipv4Range(cidr)
    return range ? [range] : []
  })
}

/** The third octet of a free 10.231.x.0/24, picked at random so concurrent labs rarely race for one. */
function pickSubnet(): number {
  const used = usedRanges()
  for (let i = 0; i < SUBNET_TRIES_MAX; i++) {
    const x = randomInt(256)
    const range = ipv4Range(`${SUBNET_BASE.join('.')}.${x}.0/24`)
    if (!range) continue
    const [first, last] = range
    if (used.every(([from, to]) => to < first || from > last)) return x
  }
  throw new Error(`no free ${SUBNET_BASE.join('.')}.x.0/24 after ${SUBNET_TRIES_MAX} tries`)
}

/**
 * Builds a lab: a bridge, one namespace per host wired to it, the root namespace on it too. On any
 * failure what was built is removed before the error is thrown.
 */
export function createLab(options: LabOptions): Lab {
  const lab = plannedLab(options)
  try {
    lab.build()
    return lab
  } catch (err) {
    lab.destroy()
    throw err
  }
}

/**
 * createLab without blocking the event loop, and with the hosts wired at once: for a lab built
 * while other work runs in this process (a chaos run prepares the next scenario's lab meanwhile).
 */
export async function createLabAsync(options: LabOptions): Promise<Lab> {
  const lab = plannedLab(options)
  try {
    await lab.buildAsync()
    return lab
  } catch (err) {
    lab.destroy()
    throw err
  }
}

/** A lab's names and addresses, not built yet, but already removed by the safety net on exit. */
function plannedLab(options: LabOptions): NetworkLab {
  validateLabOptions(options)
  const id = `${options.name}${randomBytes(2).toString('hex')}`
  const subnet = `${SUBNET_BASE.join('.')}.${pickSubnet()}`
  const hosts: Record<string, LabHost> = {}
  options.hosts.forEach((host, index) => {
    hosts[host] = { ns: `${id}-${host}`, ip: `${subnet}.${FIRST_HOST_OCTET + index}` }
  })
  const lab = new NetworkLab(id, hosts, `${subnet}.1`, options.hosts)
  installSafetyNet()
  liveLabs.add(lab)
  return lab
}

/** A command and its arguments, as run() takes them. */
type Command = readonly [command: string, args: readonly string[]]

function vethName(id: string, index: number, side: 'v' | 'p'): string {
  const name = `${id}${side}${index}`
  if (name.length > INTERFACE_NAME_CHARS_MAX) throw new RangeError(`interface name too long: ${name}`)
  return name
}

/** The owner PID is kept in the bridge's alias, so a sweep can tell a crashed run's lab from a live one. */
const OWNER_ALIAS_PREFIX = 'microbet-lab-owner-pid='

class NetworkLab implements Lab {
  readonly id: string
  readonly bridge: string
  readonly hosts: Readonly<Record<string, LabHost>>
  readonly rootIp: string
  readonly #order: readonly string[]

  constructor(id: string, hosts: Record<string, LabHost>, rootIp: string, order: readonly string[]) {
    this.id = id
    this.bridge = `${id}br`
    this.hosts = hosts
    this.rootIp = rootIp
    this.#order = order
  }

  build(): void {
    for (const [command, args] of this.#bridgeCommands()) run(command, args)
    for (const [index, host] of this.#order.entries())
      for (const [command, args] of this.#hostCommands(host, index)) run(command, args)
  }

  /**
   * build() without blocking: the bridge and the first host, then every other host at once, each
   * in its own order. The first namespace made may also make /run/netns a mount point, which
   * namespaces made at once would each try to.
   */
  async buildAsync(): Promise<void> {
    const wire = async (commands: readonly Command[]) => {
      for (const [command, args] of commands) await runAsync(command, args)
    }
    const [first, ...others] = this.#order.map((host, index) => this.#hostCommands(host, index))
    await wire([...this.#bridgeCommands(), ...(first ?? [])])
    await Promise.all(others.map(wire))
  }

  #bridgeCommands(): Command[] {
    return [
      ['ip', ['link', 'add', this.bridge, 'type', 'bridge']],
      ['ip', ['link', 'set', 'dev', this.bridge, 'alias', `${OWNER_ALIAS_PREFIX}${process.pid}`]],
      ['ip', ['addr', 'add', `${this.rootIp}/24`, 'dev', this.bridge]],
      ['ip', ['link', 'set', this.bridge, 'up']],
      // With br_netfilter loaded, frames crossing the bridge traverse the root FORWARD chain, whose
      // policy may be DROP (Docker sets it); let the lab's own frames through.
      ['iptables', ['-w', '5', '-I', 'FORWARD', ...forwardRule(this.bridge)]],
    ]
  }

  /** A host's namespace, wired to the bridge by a veth pair and holding its address. */
  #hostCommands(host: string, index: number): Command[] {
    const { ns, ip } = this.#host(host)
    const outside = vethName(this.id, index, 'v')
    const inside = vethName(this.id, index, 'p')
    const inNs = (args: string[]): Command => ['ip', ['netns', 'exec', ns, ...args]]
    return [
      ['ip', ['netns', 'add', ns]],
      ['ip', ['link', 'add', outside, 'type', 'veth', 'peer', 'name', inside]],
      ['ip', ['link', 'set', inside, 'netns', ns]],
      ['ip', ['link', 'set', outside, 'master', this.bridge, 'up']],
      inNs(['ip', 'link', 'set', inside, 'name', 'eth0']),
      inNs(['ip', 'addr', 'add', `${ip}/24`, 'dev', 'eth0']),
      inNs(['ip', 'link', 'set', 'eth0', 'up']),
      inNs(['ip', 'link', 'set', 'lo', 'up']),
    ]
  }

  exec(host: string, command: string, args: readonly string[], options: SpawnOptions = {}): ChildProcess {
    const { ns } = this.#host(host)
    return spawn('ip', ['netns', 'exec', ns, command, ...args], options)
  }

  partition(a: readonly string[], b: readonly string[]): void {
    this.#eachLink(a, b, (iptables, ip) => {
      iptables(['-A', 'INPUT', '-s', ip, '-j', 'DROP'])
      iptables(['-A', 'OUTPUT', '-d', ip, '-j', 'DROP'])
    })
  }

  lose(a: readonly string[], b: readonly string[], lossPct: number): void {
    if (!Number.isFinite(lossPct) || lossPct <= 0 || lossPct >= 100)
      throw new RangeError(`loss must be above 0 and below 100 %: ${lossPct}`)
    const probability = (lossPct / 100).toFixed(4)
    // On the receiving side only, so each packet is dropped with the probability once.
    this.#eachLink(a, b, (iptables, ip) =>
      iptables([
        '-A',
        'INPUT',
        '-s',
        ip,
        '-m',
        'statistic',
        '--mode',
        'random',
        '--probability',
        probability,
        '-j',
        'DROP',
      ]),
    )
  }

  /**
   * For every host on either side and every host on the other: `rule` gets an iptables runner in
   * the host's namespace and the other host's address.
   */
  #eachLink(
    a: readonly string[],
    b: readonly string[],
    rule: (iptables: (args: string[]) => void, otherIp: string) => void,
  ): void {
    const overlap = a.filter((host) => b.includes(host))
    if (overlap.length > 0) throw new RangeError(`a host cannot be on both sides: ${overlap.join(', ')}`)
    for (const [side, other] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const host of side) {
        const { ns } = this.#host(host)
        const iptables = (args: string[]) => run('ip', ['netns', 'exec', ns, 'iptables', '-w', '5', ...args])
        for (const peer of other) rule(iptables, this.#host(peer).ip)
      }
    }
  }

  heal(): void {
    // The namespaces are the lab's own and hold no rules but partition and loss ones, so flushing
    // is exact.
    for (const { ns } of Object.values(this.hosts)) {
      for (const chain of ['INPUT', 'OUTPUT'])
        run('ip', ['netns', 'exec', ns, 'iptables', '-w', '5', '-F', chain])
    }
  }

  delay(host: string, ms: number, jitterMs = 0, lossPct = 0): void {
    const valid = (value: number, max: number) => Number.isFinite(value) && value >= 0 && value <= max
    if (!valid(ms, NETEM_DELAY_MS_MAX) || !valid(jitterMs, ms)) {
      throw new RangeError(
        `delay must be 0-${NETEM_DELAY_MS_MAX} ms and jitter at most the delay: ${ms}, ${jitterMs}`,
      )
    }
    if (!valid(lossPct, 100)) throw new RangeError(`loss must be 0-100 %: ${lossPct}`)
    const { ns } = this.#host(host)
    const netem = ['delay', `${ms}ms`, ...(jitterMs > 0 ? [`${jitterMs}ms`] : [])]
    const loss = lossPct > 0 ? ['loss', `${lossPct}%`] : []
    // On the host's end of the veth: egress is what the host sends, so every round trip pays once.
    run('ip', [
      'netns',
      'exec',
      ns,
      'tc',
      'qdisc',
      'replace',
      'dev',
      'eth0',
      'root',
      'netem',
      ...netem,
      ...loss,
    ])
  }

  clearDelay(host: string): void {
    const { ns } = this.#host(host)
    const qdiscs = run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'show', 'dev', 'eth0'])
    if (qdiscs.includes('netem'))
      run('ip', ['netns', 'exec', ns, 'tc', 'qdisc', 'del', 'dev', 'eth0', 'root'])
  }

  destroy(): void {
    removeLab(this.id)
    liveLabs.delete(this)
    uninstallSafetyNet()
  }

  #host(host: string): LabHost {
    const found = this.hosts[host]
    if (!found) throw new RangeError(`no host ${JSON.stringify(host)} in lab ${this.id}`)
    return found
  }
}

function forwardRule(bridge: string): string[] {
  return ['-i', bridge, '-o', bridge, '-j', 'ACCEPT']
}

function namespaceNames(): string[] {
  const result = runCommand('ip', ['-j', 'netns', 'list'])
  if (result.status !== 0 || result.stdout.trim() === '') return []
  return (JSON.parse(result.stdout) as { name: string }[]).map((entry) => entry.name)
}

function linkNames(): { name: string; alias: string | undefined }[] {
  const result = runCommand('ip', ['-j', 'link', 'show'])
  if (result.status !== 0 || result.stdout.trim() === '') return []
  return (JSON.parse(result.stdout) as { ifname: string; ifalias?: string }[]).map((link) => ({
    name: link.ifname,
    alias: link.ifalias,
  }))
}

/**
 * Removes everything of lab `id`, found by name rather than remembered, so a half-built lab or one
 * left by another process goes too. Processes still running in its namespaces are killed by PID:
 * only lab scripts start processes there.
 */
function removeLab(id: string): void {
  for (const ns of namespaceNames().filter((name) => name.startsWith(`${id}-`))) {
    const pids = runCommand('ip', ['netns', 'pids', ns]).stdout.split(/\s+/).filter(Boolean)
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL')
      } catch {
        // Already gone.
      }
    }
    attempt('ip', ['netns', 'del', ns])
  }
  // Deleting a namespace deletes the veth end inside it and so its peer; this catches a veth whose
  // inside end never made it into a namespace, and the bridge.
  const links = linkNames().filter((link) => isLabLink(id, link.name))
  for (const link of links) attempt('ip', ['link', 'del', link.name])
  if (onPath('iptables')) {
    for (let i = 0; i < RULE_DELETES_MAX; i++) {
      if (!attempt('iptables', ['-w', '5', '-D', 'FORWARD', ...forwardRule(`${id}br`)])) break
    }
  }
}

/** Exact, so lab `ab12cd` never matches a link of lab `ab12cde`. */
function isLabLink(id: string, link: string): boolean {
  return link === `${id}br` || (link.startsWith(id) && /^[vp]\d+$/.test(link.slice(id.length)))
}

/** Ids of labs created with this name (the name plus 4 hex digits) that own a namespace or a link. */
function labIdsNamed(name: string): Set<string> {
  const pattern = new RegExp(`^(${name}[0-9a-f]{4})(?:-|br$|[vp]\\d+$)`)
  const ids = new Set<string>()
  for (const name of [...namespaceNames(), ...linkNames().map((link) => link.name)]) {
    const match = pattern.exec(name)
    if (match?.[1]) ids.add(match[1])
  }
  return ids
}

function ownerAlive(bridgeAlias: string | undefined): boolean {
  if (!bridgeAlias?.startsWith(OWNER_ALIAS_PREFIX)) return false
  const pid = Number(bridgeAlias.slice(OWNER_ALIAS_PREFIX.length))
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM means the process exists but belongs to someone else: still alive.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Removes labs created with this name (createLab's `name`) whose owner process is gone (a crashed or
 * killed run), and returns their ids. A lab of a live process, this one included, is left alone.
 */
export function sweepStaleLabs(name: string = DEFAULT_LAB_PREFIX): string[] {
  if (!LAB_NAME_PATTERN.test(name)) throw new RangeError(`lab name must match ${LAB_NAME_PATTERN}: ${name}`)
  const aliases = new Map(linkNames().map((link) => [link.name, link.alias]))
  const stale = [...labIdsNamed(name)].filter((id) => !ownerAlive(aliases.get(`${id}br`)))
  for (const id of stale) removeLab(id)
  return stale
}

/** Namespaces and links of lab `id` that still exist; empty once destroy() did its job. */
export function labLeftovers(id: string): string[] {
  return [
    ...namespaceNames().filter((name) => name.startsWith(`${id}-`)),
    ...linkNames()
      .map((link) => link.name)
      .filter((name) => isLabLink(id, name)),
  ]
}

/** Each server has its own namespace, so every one listens on the same well-known ports. */
const LAB_CLIENT_PORT = 4222
const LAB_CLUSTER_PORT = 6222
const LAB_MONITOR_PORT = 8222
const LAB_GATEWAY_PORT = 7222
const LAB_CLUSTER_NAME = 'fabric-lab'
export const DEFAULT_LAB_READY_TIMEOUT_MS = 30_000
/**
 * nats.conf pings every 20 s and gives up after 3 misses, right for production but a minute per
 * partition in a test; a lab notices a dead route within seconds and reconnects as soon as it heals.
 */
const LAB_PING_INTERVAL = '1s'
const LAB_PING_MAX = 3
const LAB_PROBE_TIMEOUT_MS = 2_000
const LAB_STOP_GRACE_MS = 10_000
const LAB_LOG_LINES_MAX = 200
const LAB_PROBE_STREAM = 'LAB_READY_PROBE'
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SHARED_CONFIG_FILE = path.join(REPO_ROOT, 'nats.conf')

export interface LabServer {
  /** Server name, the same as its host's name. */
  readonly name: string
  readonly host: string
  /** nats://<host ip>:4222, reachable from the root namespace. */
  readonly url: string
  /** http://<host ip>:8222 (/varz, /jsz, /healthz). */
  readonly monitorUrl: string
  readonly pid: number | undefined
  readonly running: boolean
  logs(): string[]
}

export interface LabCluster {
  /** Client URLs in host order. */
  readonly servers: string[]
  readonly processes: readonly LabServer[]
  server(host: string): LabServer
  /**
   * A connection from the root namespace. With `hosts`, to those servers only: cluster updates are
   * ignored, so the client never fails over to a server the test meant to keep it away from.
   */
  connect(
    options?: Omit<NodeConnectionOptions, 'servers'> & { hosts?: readonly string[] },
  ): Promise<NatsConnection>
  logs(): string
  /** Closes connections made by connect(), stops every server (SIGTERM, then SIGKILL) and removes the temp dir. */
  close(): Promise<void>
}

/**
 * Starts one nats-server per host, each in its host's namespace and bound to its address, clustered
 * with the others, and resolves once an R<n> stream can be created. Configs include nats.conf, as
 * scripts/nats-cluster.ts does, so a lab runs with the deployment's limits; only pings are faster.
 */
export async function startLabCluster(
  lab: Lab,
  hostNames: readonly string[],
  options: { readyTimeoutMs?: number } = {},
): Promise<LabCluster> {
  if (hostNames.length === 0) throw new RangeError('a lab cluster needs at least one host')
  for (const host of hostNames) if (!lab.hosts[host]) throw new RangeError(`no host ${host} in lab ${lab.id}`)
  const dir = mkdtempSync(path.join(tmpdir(), `${lab.id}-nats-`))
  const servers = hostNames.map((host) => new LabServerProcess(lab, host, dir, hostNames))
  const cluster = new LabNatsCluster(dir, servers)
  try {
    await cluster.start(options.readyTimeoutMs ?? DEFAULT_LAB_READY_TIMEOUT_MS)
    return cluster
  } catch (err) {
    await cluster.close().catch(() => undefined)
    throw err
  }
}

class LabServerProcess implements LabServer {
  readonly name: string
  readonly host: string
  readonly url: string
  readonly monitorUrl: string
  readonly #lab: Lab
  readonly #configFile: string
  readonly #env: NodeJS.ProcessEnv
  readonly #log: string[] = []
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor(
    lab: Lab,
    host: string,
    dir: string,
    hostNames: readonly string[],
    superCluster?: { region: string; regions: Readonly<Record<string, readonly string[]>> },
  ) {
    const ip = lab.hosts[host]?.ip
    if (ip === undefined) throw new RangeError(`no host ${host} in lab ${lab.id}`)
    this.#lab = lab
    this.name = host
    this.host = host
    this.url = `nats://${ip}:${LAB_CLIENT_PORT}`
    this.monitorUrl = `http://${ip}:${LAB_MONITOR_PORT}`
    const storeDir = path.join(dir, host)
    mkdirSync(storeDir)
    this.#configFile = path.join(dir, `${host}.conf`)
    const routes = hostNames.map((other) => `nats-route://${lab.hosts[other]?.ip}:${LAB_CLUSTER_PORT}`)
    const gateways = superCluster
      ? Object.entries(superCluster.regions).map(([region, hosts]) => ({
          region,
          urls: hosts.map((other) => `nats://${lab.hosts[other]?.ip}:${LAB_GATEWAY_PORT}`),
        }))
      : []
    writeFileSync(
      this.#configFile,
      renderLabConfig(dir, ip, routes, superCluster?.region ?? LAB_CLUSTER_NAME, gateways),
    )
    this.#env = {
      ...process.env,
      NATS_SERVER_NAME: host,
      NATS_LISTEN: `${ip}:${LAB_CLIENT_PORT}`,
      NATS_HTTP: `${ip}:${LAB_MONITOR_PORT}`,
      NATS_STORE_DIR: storeDir,
    }
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined
  }

  get running(): boolean {
    const child = this.#child
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null
  }

  logs(): string[] {
    return [...this.#log]
  }

  async start(): Promise<void> {
    const bin = process.env.NATS_SERVER_BIN || 'nats-server'
    const child = this.#lab.exec(this.host, bin, ['-c', this.#configFile], {
      env: this.#env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.#child = child
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.#note(`exited (code ${code}, signal ${signal})`)
        resolve()
      })
      child.once('error', () => resolve())
    })
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        for (const line of chunk.split('\n')) if (line) this.#note(line, false)
      })
    }
    await once(child, 'spawn')
    this.#note(`started ${bin} in ${this.#lab.hosts[this.host]?.ns} as pid ${child.pid}`)
  }

  async stop(): Promise<void> {
    const child = this.#child
    if (!child || !this.running) return
    child.kill('SIGTERM')
    const timedOut = delay(LAB_STOP_GRACE_MS, 'timeout' as const)
    if ((await Promise.race([this.#exited, timedOut])) !== 'timeout') return
    child.kill('SIGKILL')
    await this.#exited
  }

  async outboundGateways(): Promise<string[]> {
    const response = await fetch(`${this.monitorUrl}/gatewayz`, {
      signal: AbortSignal.timeout(LAB_PROBE_TIMEOUT_MS),
    })
    return response.ok ? readOutboundGateways(await response.json()) : []
  }

  async metaLeader(): Promise<string | undefined> {
    const response = await fetch(`${this.monitorUrl}/jsz`, {
      signal: AbortSignal.timeout(LAB_PROBE_TIMEOUT_MS),
    })
    if (!response.ok) return undefined
    const body = (await response.json()) as { meta_cluster?: { leader?: unknown } }
    const leader = body.meta_cluster?.leader
    return typeof leader === 'string' && leader !== '' ? leader : undefined
  }

  #note(line: string, own = true): void {
    this.#log.push(own ? `[netns] ${line}` : line)
    if (this.#log.length > LAB_LOG_LINES_MAX) this.#log.shift()
  }
}

function renderLabConfig(
  dir: string,
  ip: string,
  routes: readonly string[],
  clusterName: string,
  gateways: readonly { region: string; urls: readonly string[] }[],
): string {
  // nats-server resolves includes against the including file's dir, even absolute-looking ones.
  const include = path.relative(dir, SHARED_CONFIG_FILE)
  return [
    '# Written by scripts/chaos/netns.ts and deleted with its temp dir.',
    `include ${JSON.stringify(include)}`,
    '',
    // Keys set again after the include replace the included values.
    `ping_interval: ${JSON.stringify(LAB_PING_INTERVAL)}`,
    `ping_max: ${LAB_PING_MAX}`,
    '',
    'cluster {',
    `  name: ${clusterName}`,
    `  listen: ${ip}:${LAB_CLUSTER_PORT}`,
    '  routes: [',
    ...routes.map((route) => `    ${route}`),
    '  ]',
    '}',
    '',
    // A super-cluster: the gateway name is the cluster's, and every server lists every region.
    ...(gateways.length > 0
      ? [
          'gateway {',
          `  name: ${clusterName}`,
          `  listen: ${ip}:${LAB_GATEWAY_PORT}`,
          '  gateways: [',
          ...gateways.map((gateway) => `    { name: ${gateway.region}, urls: [${gateway.urls.join(', ')}] }`),
          '  ]',
          '}',
          '',
        ]
      : []),
  ].join('\n')
}

/**
 * What a lab cluster and a lab super-cluster share: their servers, the connections made to them,
 * starting the servers and waiting for one meta leader, logs, and a close that stops everything.
 */
abstract class LabServerSet {
  readonly #dir: string
  readonly #all: readonly LabServerProcess[]
  readonly #connections = new Set<NatsConnection>()
  #closing: Promise<void> | undefined

  constructor(dir: string, all: readonly LabServerProcess[]) {
    this.#dir = dir
    this.#all = all
  }

  get processes(): readonly LabServer[] {
    return this.#all
  }

  /** Starts every server; returns a poll bounded by `timeoutMs` in all, which fails if one dies. */
  protected async startServers(
    timeoutMs: number,
  ): Promise<<T>(what: string, attempt: () => Promise<T | undefined>) => Promise<T>> {
    await Promise.all(this.#all.map((server) => server.start()))
    const deadline = Date.now() + timeoutMs
    const poll = <T>(what: string, attempt: () => Promise<T | undefined>) =>
      pollUntil(what, attempt, {
        timeoutMs: Math.max(0, deadline - Date.now()),
        check: () => {
          const dead = this.#all.find((server) => !server.running)
          if (dead) throw new Error(`${dead.name} is not running while waiting for ${what}\n${this.logs()}`)
        },
        context: () => this.logs(),
      })
    await poll('every server to see the same JetStream meta leader', async () => {
      const leaders = await Promise.all(this.#all.map((server) => server.metaLeader().catch(() => undefined)))
      return leaders.every((leader) => leader !== undefined && leader === leaders[0]) ? leaders[0] : undefined
    })
    return poll
  }

  /** A connection to `servers`, closed by close(). */
  protected async open(
    servers: readonly string[],
    options: Omit<NodeConnectionOptions, 'servers'>,
  ): Promise<NatsConnection> {
    if (this.#closing) throw new Error('the lab cluster is closed')
    const nc = await connect({ ...options, servers: [...servers] })
    this.#connections.add(nc)
    void nc.closed().then(() => this.#connections.delete(nc))
    return nc
  }

  logs(): string {
    return this.#all
      .map((server) => [`--- ${server.name} (${server.url}) ---`, ...server.logs()].join('\n'))
      .join('\n')
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown(): Promise<void> {
    await Promise.allSettled([...this.#connections].map((nc) => nc.close()))
    await Promise.allSettled(this.#all.map((server) => server.stop()))
    rmSync(this.#dir, { recursive: true, force: true })
  }
}

class LabNatsCluster extends LabServerSet implements LabCluster {
  readonly #servers: readonly LabServerProcess[]

  constructor(dir: string, servers: readonly LabServerProcess[]) {
    super(dir, servers)
    this.#servers = servers
  }

  get servers(): string[] {
    return this.#servers.map((server) => server.url)
  }

  server(host: string): LabServer {
    const found = this.#servers.find((server) => server.host === host)
    if (!found) throw new RangeError(`no server on host ${JSON.stringify(host)}`)
    return found
  }

  async start(timeoutMs: number): Promise<void> {
    const poll = await this.startServers(timeoutMs)
    const nc = await poll('a client connection', () => this.connect({ timeout: LAB_PROBE_TIMEOUT_MS }))
    try {
      const jsm = await jetstreamManager(nc, { timeout: LAB_PROBE_TIMEOUT_MS, checkAPI: false })
      // A meta leader alone does not mean replicas can be placed yet; creating a stream proves it.
      await poll('a replicated probe stream', async () => {
        const replicas = Math.min(this.#servers.length, 5)
        await jsm.streams.add({
          name: LAB_PROBE_STREAM,
          subjects: ['lab-ready-probe'],
          storage: StorageType.Memory,
          num_replicas: replicas,
        })
        await jsm.streams.delete(LAB_PROBE_STREAM)
        return true
      })
    } finally {
      await nc.close()
    }
  }

  connect(
    options: Omit<NodeConnectionOptions, 'servers'> & { hosts?: readonly string[] } = {},
  ): Promise<NatsConnection> {
    const { hosts, ...rest } = options
    const servers = hosts ? hosts.map((host) => this.server(host).url) : this.servers
    return this.open(servers, { ...rest, ...(hosts ? { ignoreClusterUpdates: true } : {}) })
  }
}

export interface LabSuperCluster {
  readonly regions: readonly string[]
  readonly processes: readonly LabServer[]
  /** Client URLs of one region's servers. */
  servers(region: string): string[]
  /** A connection to one region's servers only (cluster updates ignored). */
  connect(region: string, options?: Omit<NodeConnectionOptions, 'servers'>): Promise<NatsConnection>
  logs(): string
  /** Closes connections made by connect(), stops every server and removes the temp dir. */
  close(): Promise<void>
}

/**
 * Starts one cluster per region (`regions`: region name to its hosts, 3 for R3 streams), each
 * server in its host's namespace, joined by gateways into a super-cluster as
 * scripts/nats-cluster.ts's startSuperCluster does on loopback, so that links between regions can
 * be cut while every server runs. Resolves once every server sees one meta leader and a gateway to
 * every other region, and in every region a replicated stream placed there takes a publish.
 */
export async function startLabSuperCluster(
  lab: Lab,
  regions: Readonly<Record<string, readonly string[]>>,
  options: { readyTimeoutMs?: number } = {},
): Promise<LabSuperCluster> {
  const names = Object.keys(regions)
  if (names.length === 0) throw new RangeError('a lab super-cluster needs at least one region')
  const dir = mkdtempSync(path.join(tmpdir(), `${lab.id}-nats-`))
  const byRegion = new Map(
    names.map((region) => {
      const hosts = regions[region] as readonly string[]
      for (const host of hosts) if (!lab.hosts[host]) throw new RangeError(`no host ${host} in lab ${lab.id}`)
      return [region, hosts.map((host) => new LabServerProcess(lab, host, dir, hosts, { region, regions }))]
    }),
  )
  const cluster = new LabNatsSuperCluster(dir, byRegion)
  try {
    await cluster.start(options.readyTimeoutMs ?? DEFAULT_LAB_READY_TIMEOUT_MS)
    return cluster
  } catch (err) {
    await cluster.close().catch(() => undefined)
    throw err
  }
}

class LabNatsSuperCluster extends LabServerSet implements LabSuperCluster {
  readonly #byRegion: ReadonlyMap<string, readonly LabServerProcess[]>

  constructor(dir: string, byRegion: ReadonlyMap<string, readonly LabServerProcess[]>) {
    super(dir, [...byRegion.values()].flat())
    this.#byRegion = byRegion
  }

  get regions(): readonly string[] {
    return [...this.#byRegion.keys()]
  }

  #of(region: string): readonly LabServerProcess[] {
    const servers = this.#byRegion.get(region)
    if (!servers) throw new RangeError(`no region ${JSON.stringify(region)} in the lab super-cluster`)
    return servers
  }

  servers(region: string): string[] {
    return this.#of(region).map((server) => server.url)
  }

  async start(timeoutMs: number): Promise<void> {
    const poll = await this.startServers(timeoutMs)
    const all = [...this.#byRegion.values()].flat()
    await poll('a gateway from every server to every other region', async () => {
      const others = this.regions.length - 1
      const counts = await Promise.all(all.map((server) => server.outboundGateways().catch(() => [])))
      return counts.every((gateways) => gateways.length >= others) ? true : undefined
    })
    for (const region of this.regions) {
      const nc = await poll(`a client connection in ${region}`, () =>
        this.connect(region, { timeout: LAB_PROBE_TIMEOUT_MS }),
      )
      try {
        const jsm = await jetstreamManager(nc, { timeout: LAB_PROBE_TIMEOUT_MS, checkAPI: false })
        const replicas = Math.min(this.#of(region).length, 3)
        await poll(`a replicated probe stream in ${region}`, () =>
          probeRegionStream(jsm, jsm.jetstream(), region, replicas),
        )
      } finally {
        await nc.close()
      }
    }
  }

  connect(region: string, options: Omit<NodeConnectionOptions, 'servers'> = {}): Promise<NatsConnection> {
    return this.open(this.servers(region), { ...options, ignoreClusterUpdates: true })
  }
}
