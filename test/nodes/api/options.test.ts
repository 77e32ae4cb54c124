// Proves that the API node's options cannot loosen what the ledger fold accepts: every stake and
// limit option is bounded by the ledger's own maximum, so a stake above STAKE_CENTS_MAX is a
// configuration error at start, not a bet the fold would refuse as MALFORMED after the node took it.

import t from 'tap'
import { AMOUNT_CENTS_MAX, MARKET_LIABILITY_CENTS_MAX, STAKE_CENTS_MAX } from '../../../ledger/index.ts'
import { DEFAULT_BET_LIMITS } from '../../../nodes/api/bet-limits.ts'
import { options } from '../../../nodes/api/options.ts'
import { ConfigError, parseConfig } from '../../../nodes/fabric/config.ts'

t.test('no option loosens a core bound', async (t) => {
  t.equal(options.stakeCentsMax.max, STAKE_CENTS_MAX)
  t.equal(options.stakeCentsMin.max, STAKE_CENTS_MAX)
  t.equal(options.userOpenStakeCentsMax.max, AMOUNT_CENTS_MAX, 'the limit a bet entry carries')
  t.equal(
    options.marketLiabilityCentsMax.max,
    MARKET_LIABILITY_CENTS_MAX,
    'the largest limit a bet entry carries',
  )
  for (const [name, value] of Object.entries(DEFAULT_BET_LIMITS)) {
    const option = options[name as keyof typeof options] as { max?: number } | undefined
    if (option?.max !== undefined) t.ok(value <= option.max, `the default ${name} is within its bound`)
  }
})

t.test('a stake above the ledger’s maximum is a config error at start', async (t) => {
  t.throws(
    () => parseConfig(options, { argv: ['--stake-cents-max', String(STAKE_CENTS_MAX + 1)], env: {} }),
    ConfigError,
  )
  const config = parseConfig(options, { argv: ['--stake-cents-max', String(STAKE_CENTS_MAX)], env: {} })
  t.equal(config.stakeCentsMax, STAKE_CENTS_MAX, 'the maximum itself is fine')
})
