/**
 * The gateway's page in a real browser. Debian's Chromium, driven through playwright-core, opens
 * the page of a gateway on a real 3-server cluster, logs in, and follows a point of `match-1`
 * driven by the manual trader: the score, the ticking clock and the markets render; a price goes in
 * the slip and a bet is placed; the bet is seen provisional then final with the latency of each
 * step, then settled as won with the balance paid. With a second match running, the page lists
 * both with their scores, marks the one shown, and switches on a click: the old game's markets and
 * the slip's selection are gone before the new game's snapshot comes, the old game is left (with one
 * subscription allowed per connection, a switch that did not unsubscribe would be refused), and the
 * list's scores follow the points. It proves the page speaks the protocol the gateway serves, and
 * does so without a console error or a failed request. A screenshot of the end state is kept in
 * .tap/gateway-page.png (tap's output directory); its path is printed.
 *
 * The browser is not optional: without /usr/bin/chromium the test fails, it does not skip.
 */

import { existsSync, mkdirSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { type Browser, chromium, type Locator, type Page } from 'playwright-core'
import t from 'tap'
import { marketIds } from '../../nodes/trader/trader.ts'
import { GAME, type GatewayStack, startGatewayStack } from '../helpers/gateway-stack.ts'
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

/** A page that records its console errors, page errors and failed requests in `problems`. */
async function watchedPage(browser: Browser): Promise<Page> {
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
  return page
}

/**
 * Click an element and read, in the same task, what the page shows: no WebSocket frame can be
 * handled in between. A string, since the tests are type-checked without the DOM's types.
 */
const clickAndRead = (testid: string) => `(() => {
  document.querySelector('[data-testid="${testid}"]').click()
  return {
    markets: document.getElementById('markets').children.length,
    slip: document.getElementById('slip-selection').textContent,
    place: document.getElementById('slip-place').disabled,
  }
})()`

async function logIn(page: Page, stack: GatewayStack, user: string) {
  await page.goto(stack.gateway.url)
  await page.getByTestId('login-user').fill(user)
  await page.getByTestId('login-button').click()
  await waitForAttribute(page.getByTestId('connection'), 'data-state', 'live')
}

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

  const page = await watchedPage(browser)
  await logIn(page, stack, USER)
  const balance = page.getByTestId('balance')
  await waitForText(balance, 'the balance at login', (text) => text === money(DEPOSIT_CENTS))
  const listed = page.getByTestId(`game-${GAME}`)
  await waitForText(listed, 'the game in the live matches', (text) => text === `${GAME} 0 - 0`)
  t.equal(await page.getByTestId('games').getByRole('button').count(), 1, 'the only game listed')
  await waitForAttribute(listed, 'aria-current', 'true')

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

t.test('the page lists the live matches and switches between them', async (t) => {
  t.ok(existsSync(CHROMIUM_PATH), `${CHROMIUM_PATH} exists (Debian: apt-get install chromium)`)
  if (!existsSync(CHROMIUM_PATH)) return
  let browser: Browser | undefined
  const stack = await startGatewayStack({
    extraGames: ['match-2'],
    limits: { subscriptionsPerConnectionMax: 1 },
  })
  t.teardown(async () => {
    await browser?.close()
    await stack.close()
  })
  browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS })
  const page = await watchedPage(browser)
  await logIn(page, stack, 'switch-user')
  const title = page.getByTestId('game')
  await waitForText(title, 'a game followed', (text) => text !== 'No game yet')
  // The first game the gateway lists is followed; which one that is depends on what it heard first.
  const first = await textOf(title)
  const other = first === GAME ? 'match-2' : GAME
  t.ok([GAME, 'match-2'].includes(first), `the page follows ${first}`)
  const feedOf = (gameId: string) => (gameId === GAME ? stack.feed : stack.extraFeeds.get(gameId)!)
  const button = (gameId: string) => page.getByTestId(`game-${gameId}`)
  await waitForText(button(other), 'the other game in the list', (text) => text === `${other} 0 - 0`)
  t.same(
    await page.getByTestId('games').getByRole('button').allTextContents(),
    ['match-1 0 - 0', 'match-2 0 - 0'],
    'both games, in order, with their scores',
  )
  await waitForAttribute(button(first), 'aria-current', 'true')
  t.equal(await button(other).getAttribute('aria-current'), null, 'only the game shown is current')

  // A price of the first game in the slip, then its point played out: its score moves in the list.
  const ids = marketIds(1)
  stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const winnerStatus = page.getByTestId(`status-${ids.winner}`)
  await waitForText(winnerStatus, 'the winner market to open', (text) => text === 'open')
  await page.getByTestId(`price-${ids.winner}-home`).click()
  await waitForText(page.getByTestId('slip-odds'), 'the price in the slip', (text) => text !== '')
  feedOf(first).emit({ type: 'serve', point: 1, second: false })
  feedOf(first).emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  await waitForText(winnerStatus, 'the first game’s market to close', (text) => text === 'closed')
  await waitForText(button(first), 'the shown game’s score in the list', (text) => text === `${first} 1 - 0`)

  // The click clears the old game at once, before any frame of the new one can arrive.
  const atClick = await page.evaluate(clickAndRead(`game-${other}`))
  t.same(
    atClick,
    { markets: 0, slip: 'Click a price to add it here.', place: true },
    'no market, price or slip selection of the old game is left',
  )
  await waitForAttribute(button(other), 'aria-current', 'true')
  t.equal(await button(first).getAttribute('aria-current'), null, 'the old game is no longer current')
  await waitForText(title, 'the other game’s title', (text) => text === other)
  await waitForText(winnerStatus, 'the other game’s markets', (text) => text === 'open')
  t.equal(await textOf(page.getByTestId('score-home')), '0', 'the other game’s score')
  t.equal(
    await page.getByTestId(`price-${ids.winner}-home`).getAttribute('aria-pressed'),
    'false',
    'the old selection is not carried over',
  )

  // The new game follows its points, on the page and in the list; the list's refresh brings the
  // points of the game left, which the page no longer follows.
  feedOf(other).emit({ type: 'serve', point: 1, second: false })
  feedOf(other).emit({ type: 'point-end', point: 1, winner: 'away', ace: false })
  await waitForText(page.getByTestId('score-away'), 'the point on the page', (text) => text === '1')
  await waitForText(button(other), 'the point in the list', (text) => text === `${other} 0 - 1`)
  feedOf(first).emit({ type: 'point-start', point: 2, server: 'home' })
  feedOf(first).emit({ type: 'serve', point: 2, second: false })
  feedOf(first).emit({ type: 'point-end', point: 2, winner: 'home', ace: false })
  await waitForText(button(first), 'the list to refresh', (text) => text === `${first} 2 - 0`)

  // And back: the first game as it stands, its point played.
  await button(first).click()
  await waitForText(title, 'the first game again', (text) => text === first)
  await waitForText(winnerStatus, 'its closed market', (text) => text === 'closed')
  await waitForText(page.getByTestId('score-home'), 'its score', (text) => text === '2')
  await waitForText(page.getByTestId('notice'), 'no refusal', (text) => text === '')
  t.same(problems, [], 'no console errors, page errors or failed requests')
})
