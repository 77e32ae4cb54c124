/**
 * How often a client may try to connect. Every upgrade takes a token from its client address's
 * bucket before anything else is read of it, so a flood of attempts costs no JWT check (the
 * expensive part, and with a JWKS perhaps a fetch); one that names a user takes one from the user's
 * bucket too. Both kinds outlive the attempts until they have refilled (bucket-table.ts), in tables
 * of bounded size. An IPv6 client is counted by its /64 network: one host commonly holds a whole
 * /64, and could otherwise take a fresh address for each attempt.
 */

import { isIPv6 } from 'node:net'
import { createBucketTable } from './bucket-table.ts'
import type { GatewayLimits } from './limits.ts'

export type UpgradeLimitValues = Pick<
  GatewayLimits,
  | 'userUpgradesPerSecond'
  | 'userUpgradesBurst'
  | 'userBucketsMax'
  | 'ipUpgradesPerSecond'
  | 'ipUpgradesBurst'
  | 'ipBucketsMax'
>

export interface UpgradeLimits {
  /** Take an attempt from the client address's bucket: 0, or the ms until one will pass. */
  address(ip: string, nowMs: number): number
  /** Take an attempt from the user's bucket: 0, or the ms until one will pass. */
  user(userId: string, nowMs: number): number
}

export function createUpgradeLimits(limits: UpgradeLimitValues): UpgradeLimits {
  const addresses = createBucketTable({
    perSecond: limits.ipUpgradesPerSecond,
    burst: limits.ipUpgradesBurst,
    entriesMax: limits.ipBucketsMax,
  })
  const users = createBucketTable({
    perSecond: limits.userUpgradesPerSecond,
    burst: limits.userUpgradesBurst,
    entriesMax: limits.userBucketsMax,
  })
  return {
    address: (ip, nowMs) => addresses.take(addressKeyOf(ip), nowMs),
    user: (userId, nowMs) => users.take(userId, nowMs),
  }
}

const IPV4_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i
const IPV6_GROUPS = 8
/** Groups of 16 bits in the network part of an IPv6 address as it is counted (/64). */
const IPV6_NETWORK_GROUPS = 4

/** The key an address is counted under: an IPv4 address, or an IPv6 address's /64 network. */
export function addressKeyOf(ip: string): string {
  const mapped = IPV4_MAPPED.exec(ip)?.[1]
  if (mapped !== undefined) return mapped
  if (!isIPv6(ip)) return ip
  return `${ipv6Groups(ip).slice(0, IPV6_NETWORK_GROUPS).join(':')}::/64`
}

/** An IPv6 address's eight groups, each without leading zeros; `::` expanded, a zone dropped. */
function ipv6Groups(ip: string): string[] {
  const [head = '', tail] = (ip.split('%')[0] ?? '').split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  // A trailing dotted quad holds two groups.
  const width = right.length + (right.at(-1)?.includes('.') ? 1 : 0)
  const zeros = tail === undefined ? [] : Array<string>(IPV6_GROUPS - left.length - width).fill('0')
  return [...left, ...zeros, ...right].map((group) =>
    group.includes('.') ? group : Number.parseInt(group, 16).toString(16),
  )
}
