/**
 * The gateway's page in a real browser. Debian's Chromium, driven through playwright-core, opens
 * the page of a gateway on a real 3-server cluster, logs in, and follows a point of `match-1`
 * driven by the manual trader: the score, the ticking clock and the markets render; a price goes in
 * the slip and a bet is placed; the bet is seen provisional then final with the latency of each
 * step, then settled as won with the balance paid. It proves the page speaks the protocol the
 * gateway serves, and does so without a console error or a failed request. A screenshot of the end
 * state is kept in .tap/gateway-page.png (tap's output directory); its path is printed.
 *
 * The browser is not optional: without /usr/bin/chromium the test fails, it does not skip.
 */

import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { type Browser, chromium, type Locator } from 'playwright-core'
import t from 'tap'
import { marketIds } from '../../nodes/trader/trader.ts'
import { startGatewayStack } from '../helpers/gateway-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const CHROMIUM_PATH = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
/** Playwright's own wait for an element; the page answers in milliseconds when all is well. */
const ACTION_TIMEOUT_MS = 10_000
const USER = 'page-user'
const DEPOSIT_CENTS = 10_000
const STAKE_CENTS = 500

const money = (cents: number) => (cents / 100).toFixed(2)
/** Console errors, page errors and failed requests of the page; a failed wait reports them too. */
const problems: string[] = []

async function textOf(locator: Locator): Promise<string> {
  return ((await locator.textContent()) ?? '').trim()
}

/** Wait until a value read from the page matches; on timeout, say what it was and what went wrong. */
async function waitForValue<T>(what: string, read: () => Promise<T>, matches: (value: T) => boolean) {
  let last: T | undefined
  try {
    await waitFor(what, async () => {
      last = await read()
      return matches(last)
    })
  } catch (error) {
    const seen = `it was ${JSON.stringify(last)}; page problems: ${JSON.stringify(problems)}`
    throw new Error(`${(error as Error).message}; ${seen}`)
  }
}

const waitForText = (locator: Locator, what: string, matches: (text: string) => boolean) =>
  waitForValue(what, () => textOf(locator), matches)

const waitForAttribute = (locator: Locator, name: string, value: string) =>
  waitForValue(
    `${name}=${value}`,
    () => locator.getAttribute(name),
    (seen) => seen === value,
  )

t.test('the page follows a point and a bet from the click to the payout', async (t) => {
  t.ok(existsSync(CHROMIUM_PATH), `${CHROMIUM_PATH} exists (Debian: apt-get install chromium)`)
  if (!existsSync(CHROMIUM_PATH)) return
  let browser: Browser | undefined
  const stack = await startGatewayStack()
  t.teardown(async () => {
    await browser?.close()
    await stack.close()
  })
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS })
  await stack.deposit(USER, DEPOSIT_CENTS)
  // The page reads the balance from a settlement node, whose ledger fold follows the API's.
  await waitFor(
    'the settlement node to fold the deposit',
    () => stack.settlement.ledger.foldFor(USER).balance(USER) === DEPOSIT_CENTS,
  )

  const page = await browser.newPage()
  page.setDefaultTimeout(ACTION_TIMEOUT_MS)
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`)
  })
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
  page.on('requestfailed', (request) =>
    problems.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ''}`),
  )
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()}: ${response.url()}`)
  })

  await page.goto(stack.gateway.url)
  await page.getByTestId('login-user').fill(USER)
  await page.getByTestId('login-button').click()
  await waitForAttribute(page.getByTestId('connection'), 'data-state', 'live')
  const balance = page.getByTestId('balance')
  await waitForText(balance, 'the balance at login', (text) => text === money(DEPOSIT_CENTS))

  const clock = page.getByTestId('clock')
  await waitForText(clock, 'the running clock', (text) => /^P1 \d\d:\d\d\.\d$/.test(text))
  const reading = await textOf(clock)
  await waitForText(clock, 'the clock to tick', (text) => text !== reading)
  t.equal(await textOf(page.getByTestId('score-home')), '0', 'no point has been played')
  t.equal(await textOf(page.getByTestId('score-away')), '0')

  const ids = marketIds(1)
  stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const winnerStatus = page.getByTestId(`status-${ids.winner}`)
  await waitForText(winnerStatus, 'the winner market to open', (text) => text === 'open')
  await waitForText(
    page.getByTestId(`status-${ids.ace}`),
    'the ace market to open',
    (text) => text === 'open',
  )
  t.match(await textOf(page.getByTestId(`market-${ids.winner}`)), /Point 1: winner/)

  const price = page.getByTestId(`price-${ids.winner}-home`)
  const shownOdds = await textOf(price.locator('.odds'))
  const odds = Math.round(Number(shownOdds) * 1000)
  t.ok(odds > 1000, `the home price shows as decimal odds (${shownOdds})`)
  await price.click()
  await waitForText(page.getByTestId('slip-odds'), 'the price in the slip', (text) => text === shownOdds)
  t.equal(await page.getByTestId('slip-policy').inputValue(), 'exact', 'the odds policy defaults to exact')
  await page.getByTestId('slip-stake').fill(money(STAKE_CENTS))
  await page.getByTestId('slip-place').click()

  // The bet's own element carries data-status; its parts (verdict, steps) do not.
  const bet = page.locator('[data-testid^="bet-"][data-status]')
  await waitForAttribute(bet, 'data-status', 'final')
  t.equal(await bet.count(), 1, 'one bet in the list')
  const betId = ((await bet.getAttribute('data-testid')) ?? '').slice('bet-'.length)
  t.match(betId, /^[A-Za-z0-9_.:-]{8,128}$/, 'the bet id fits the protocol')
  const steps = await textOf(page.getByTestId(`bet-${betId}-steps`))
  t.match(steps, /provisional in \d+ ms/, 'the provisional verdict shows its latency')
  t.match(steps, /final in \d+ ms/, 'the final verdict shows its latency')
  t.equal(await textOf(page.getByTestId(`bet-${betId}-verdict`)), 'accepted')
  await waitForText(balance, 'the stake taken', (text) => text === money(DEPOSIT_CENTS - STAKE_CENTS))
  const row = stack.settlement.projection.history(USER).find((entry) => entry.betId === betId)
  t.match(row, { marketId: ids.winner, selectionId: 'home', stakeCents: STAKE_CENTS, odds, policy: 'exact' })

  stack.feed.emit({ type: 'serve', point: 1, second: false })
  await waitForText(winnerStatus, 'the market to suspend', (text) => text === 'suspended')
  t.ok(await price.isDisabled(), 'a suspended price cannot be clicked')
  stack.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  await waitForText(winnerStatus, 'the market to close', (text) => text === 'closed')
  const result = page.getByTestId(`result-${ids.winner}`)
  await waitForText(result, 'the result', (text) => text === 'Result: home')
  await waitForText(page.getByTestId('score-home'), 'the point in the score', (text) => text === '1')

  await waitForAttribute(bet, 'data-status', 'settled')
  const payoutCents = Math.floor((STAKE_CENTS * odds) / 1000)
  t.equal(await textOf(page.getByTestId(`bet-${betId}-outcome`)), `won, paid ${money(payoutCents)}`)
  t.match(await textOf(page.getByTestId(`bet-${betId}-steps`)), /settled in \d+ ms/)
  await waitForText(
    balance,
    'the payout in the balance',
    (text) => text === money(DEPOSIT_CENTS - STAKE_CENTS + payoutCents),
  )

  // Beside tap's own output (.tap/, ignored by git), overwritten by each run instead of piling up.
  const screenshot = join(import.meta.dirname, '..', '..', '.tap', 'gateway-page.png')
  mkdirSync(dirname(screenshot), { recursive: true })
  await page.screenshot({ path: screenshot, fullPage: true })
  t.comment(`screenshot: ${screenshot}`)
  t.same(problems, [], 'no console errors, page errors or failed requests')
})
