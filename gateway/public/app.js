/**
 * The gateway's live page: log in, pick one of the live matches (the first is followed at once),
 * follow it over the WebSocket (protocol v1, the frames of gateway/protocol.ts), put prices in a
 * slip, place bets and watch each one move through its statuses. No build step and no
 * dependencies: the file runs as served. Market and selection names come from the feed and user
 * ids from the user, so everything shown goes in as text nodes, never as markup.
 */

const SESSION_KEY = 'microbet.session'
const RECONNECT_BASE_MS = 500
const RECONNECT_MAX_MS = 10_000
/** While a gap in the deltas stays open, the resume request is repeated at most this often. */
const RESUME_RETRY_MS = 2_000
/** A placement still unanswered after this long is flagged; the gateway gives up on it after 5 s. */
const PLACE_ANSWER_MS = 8_000
const TICK_SHOWN_MS = 1_200
const CLOCK_REFRESH_MS = 100
/** How often the list of live matches is asked again while connected (the gateway caches it 1 s). */
const GAMES_REFRESH_MS = 2_000
/** The protocol's stake bound: a larger one would be refused as a bad frame, with no ref to show it on. */
const STAKE_CENTS_MAX = 1_000_000_000

/** Close codes (CLOSE in gateway/protocol.ts) in words, and whether reconnecting can help. */
const CLOSE_REASONS = new Map([
  [1000, ['closed', true]],
  [1001, ['the gateway is shutting down', true]],
  [1006, ['the connection was lost', true]],
  [1009, ['a frame was too large', true]],
  [4001, ['not authorized', false]],
  [4002, ['the login has expired', false]],
  [4003, ['this page may not connect from its origin', false]],
  [4008, ['too slow to keep up with the game', true]],
  [4009, ['too many connections for this user', true]],
  [4010, ['the gateway is full', true]],
  [4029, ['too many messages sent', true]],
])
const AUTH_CLOSES = new Set([4001, 4002])
/** Order of a bet's statuses: a status at or below the one shown is a duplicate or late. */
const RANK = { sent: 0, provisional: 1, final: 2, settled: 3, refused: 4 }

const state = {
  session: null,
  socket: null,
  attempts: 0,
  reconnectTimer: 0,
  hellos: 0,
  clockOffsetMs: 0,
  /** The game asked for; `game` holds it once its snapshot has come. */
  gameId: null,
  game: null,
  /** The last `/v1/games/summary`: every live match with its score. */
  games: [],
  resumeAtMs: 0,
  /** Last price seen per market and selection, across suspensions, so a reopening shows the move. */
  lastOdds: new Map(),
  slip: null,
  bets: new Map(),
  /** Placement refs to bet ids, so an error frame lands on its bet. */
  refs: new Map(),
  nextRef: 1,
  /** Bumped by every bet frame's balance, so an older balance query does not overwrite it. */
  balanceVersion: 0,
}
const marketNodes = new Map()
/** The live matches' list items, by game id. */
const gameNodes = new Map()

const byId = (id) => document.getElementById(id)
const formatMoney = (cents) => (cents / 100).toFixed(2)
const formatOdds = (odds) => (odds / 1000).toFixed(3).replace(/0$/, '')
/** A verdict in words: the judge's reason codes (PRICE_CHANGED) read well enough lower-cased. */
const verdictText = (accepted, reason) =>
  accepted ? 'accepted' : `rejected: ${String(reason).toLowerCase().replaceAll('_', ' ')}`
const nextRef = (kind) => `${kind}-${state.nextRef++}`
const hex = (bytes) => Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')
// getRandomValues, unlike randomUUID, also works on a plain-http page that is not localhost.
const newBetId = () => `bet-${hex(crypto.getRandomValues(new Uint8Array(12)))}`

/** An element from attributes, `text`, `className`, `testid` and `on<event>` handlers, and children. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === 'text') node.textContent = value
    else if (key === 'className') node.className = value
    else if (key === 'testid') node.dataset.testid = value
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value)
    else node.setAttribute(key, value)
  }
  node.append(...children)
  return node
}

const setText = (id) => (text) => {
  byId(id).textContent = text
}
const showNotice = setText('notice')
const slipMessage = setText('slip-message')
const setBalance = (cents) => setText('balance')(cents === null ? '-' : formatMoney(cents))

function setConnection(name, text) {
  byId('connection').dataset.state = name
  byId('connection').textContent = text
}

// ---- session -----------------------------------------------------------------------------------

function savedSession() {
  try {
    const value = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null')
    return typeof value?.token === 'string' && typeof value?.userId === 'string' ? value : null
  } catch {
    return null
  }
}

async function login(event) {
  event.preventDefault()
  const error = byId('login-error')
  error.textContent = ''
  try {
    const response = await fetch('/v1/demo/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ userId: byId('login-user').value.trim() }),
    })
    const body = await response.json()
    if (response.ok) return start({ token: body.token, userId: body.userId })
    error.textContent = body?.error?.message ?? `login failed (HTTP ${response.status})`
  } catch (failure) {
    error.textContent = `login failed: ${failure.message}`
  }
}

function showLoggedIn(loggedIn) {
  byId('login').hidden = loggedIn
  byId('main').hidden = !loggedIn
  byId('account').hidden = !loggedIn
}

function start(session) {
  Object.assign(state, { session, hellos: 0, attempts: 0 })
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session))
  showLoggedIn(true)
  byId('user').textContent = session.userId
  setBalance(null)
  showNotice('')
  loadAccount(session)
  connect()
}

function logout(message) {
  const socket = state.socket
  clearTimeout(state.reconnectTimer)
  Object.assign(state, { session: null, socket: null, gameId: null, game: null, slip: null, games: [] })
  socket?.close(1000, 'logged out')
  sessionStorage.removeItem(SESSION_KEY)
  for (const collection of [state.bets, state.refs, state.lastOdds, marketNodes, gameNodes])
    collection.clear()
  byId('markets').replaceChildren()
  byId('games-list').replaceChildren()
  byId('bets').replaceChildren()
  showLoggedIn(false)
  byId('login-error').textContent = message
  setConnection('logged-out', message)
}

/** GET a `{ data }` answer with the session's token; null when it is not available. */
async function getData(session, path) {
  const response = await fetch(path, { headers: { authorization: `Bearer ${session.token}` } })
  if (response.status === 401 && state.session === session) logout('not authorized: please log in again')
  return response.ok ? (await response.json()).data : null
}

/** Balance and history: at login, and after a reconnect (statuses may have passed meanwhile). */
async function loadAccount(session) {
  const user = encodeURIComponent(session.userId)
  const version = state.balanceVersion
  const [balance, history] = await Promise.all([
    getData(session, `/v1/users/${user}/balance`).catch(() => null),
    getData(session, `/v1/users/${user}/bets`).catch(() => null),
  ])
  if (state.session !== session) return
  if (version === state.balanceVersion) setBalance(balance?.balanceCents ?? null)
  if (history === null) return showNotice('the bet history is not available yet')
  // Served newest first; each bet shown goes on top, so oldest first here.
  for (const row of [...history].reverse()) mergeRow(row)
}

// ---- socket ------------------------------------------------------------------------------------

function connect() {
  const session = state.session
  if (session === null) return
  setConnection('connecting', 'connecting')
  const token = encodeURIComponent(session.token)
  const socket = new WebSocket(`${location.origin.replace('http', 'ws')}/v1/ws?access_token=${token}`)
  state.socket = socket
  socket.addEventListener('message', (event) => {
    if (state.socket === socket) onFrame(event.data)
  })
  socket.addEventListener('close', (event) => {
    if (state.socket === socket) onClose(event.code)
  })
}

function onClose(code) {
  state.socket = null
  const [words, retry] = CLOSE_REASONS.get(code) ?? [`closed with code ${code}`, true]
  if (AUTH_CLOSES.has(code)) return logout(`${words}: please log in again`)
  if (!retry) return setConnection('closed', `${words} (${code})`)
  const backoffMs = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** state.attempts++)
  const delayMs = backoffMs * (0.5 + Math.random() / 2)
  setConnection('reconnecting', `${words} (${code}); reconnecting in ${(delayMs / 1000).toFixed(1)} s`)
  state.reconnectTimer = setTimeout(connect, delayMs)
}

function send(frame) {
  if (state.socket?.readyState !== WebSocket.OPEN) return false
  state.socket.send(JSON.stringify(frame))
  return true
}

function onFrame(data) {
  let frame
  try {
    frame = JSON.parse(data)
  } catch {
    return showNotice('the gateway sent a frame that is not JSON')
  }
  if (Object.hasOwn(handlers, frame?.type)) handlers[frame.type](frame)
}

function subscribe(gameId, resume) {
  state.gameId = gameId
  if (resume !== undefined) state.resumeAtMs = Date.now()
  send({ type: 'subscribe', ref: nextRef('subscribe'), gameId, ...(resume ? { resume } : {}) })
}

async function chooseGame(socket) {
  const games = await getData(state.session, '/v1/games').catch(() => null)
  // Gone, or the user picked a match from the list meanwhile.
  if (state.socket !== socket || state.gameId !== null) return
  if (games?.[0] !== undefined) {
    showNotice('')
    return subscribe(games[0])
  }
  showNotice('no game is running yet; looking again shortly')
  setTimeout(() => chooseGame(socket), RESUME_RETRY_MS)
}

/** The live matches, now and every GAMES_REFRESH_MS for as long as `socket` is the page's. */
async function watchGames(socket) {
  const games = await getData(state.session, '/v1/games/summary').catch(() => null)
  if (state.socket !== socket) return
  if (Array.isArray(games)) {
    state.games = games
    renderGames()
  }
  setTimeout(() => watchGames(socket), GAMES_REFRESH_MS)
}

/**
 * Follow another game: leave the current one, and forget its markets, prices and the slip's
 * selection, so that nothing of the old game shows (or can be bet on) while the new one's snapshot
 * is on its way. Offline, the pick waits for the next connection's hello.
 */
function switchGame(gameId) {
  if (gameId === state.gameId) return
  if (state.gameId !== null) send({ type: 'unsubscribe', ref: nextRef('unsubscribe'), gameId: state.gameId })
  Object.assign(state, { game: null, slip: null })
  for (const collection of [state.lastOdds, marketNodes]) collection.clear()
  byId('markets').replaceChildren()
  byId('score').replaceChildren()
  byId('game-title').textContent = gameId
  byId('game').setAttribute('aria-busy', 'true')
  slipMessage('')
  renderClock()
  renderSlip()
  subscribe(gameId)
  renderGames()
}

/** Ask for what was missed since the last delta applied (the gateway may send a snapshot instead). */
function requestResume(game) {
  if (Date.now() - state.resumeAtMs < RESUME_RETRY_MS) return
  subscribe(game.gameId, { epoch: game.epoch, seq: game.seq })
}

const handlers = {
  hello(frame) {
    state.attempts = 0
    state.clockOffsetMs = frame.serverTimeMs - Date.now()
    setConnection('live', `live as ${frame.userId}`)
    if (state.hellos++ > 0) loadAccount(state.session)
    watchGames(state.socket)
    const game = state.game
    if (game !== null) return subscribe(game.gameId, { epoch: game.epoch, seq: game.seq })
    // A game picked whose snapshot had not come yet stays the one followed.
    if (state.gameId !== null) return subscribe(state.gameId)
    chooseGame(state.socket)
  },
  snapshot(frame) {
    if (frame.gameId !== state.gameId) return
    const { gameId, epoch, seq, view } = frame
    const markets = new Map(view.markets.map((market) => [market.marketId, market]))
    state.game = { gameId, epoch, seq, clock: view.clock, score: view.score, markets }
    state.resumeAtMs = 0
    byId('game-title').textContent = gameId
    byId('game').removeAttribute('aria-busy')
    renderGame([...marketNodes.keys(), ...markets.keys()])
  },
  delta(frame) {
    const game = state.game
    if (game === null || frame.gameId !== game.gameId) return
    if (frame.epoch !== game.epoch) return requestResume(game)
    if (frame.seq <= game.seq) return
    if (frame.seq !== game.seq + 1) return requestResume(game)
    game.seq = frame.seq
    state.resumeAtMs = 0
    if (frame.clock !== undefined) game.clock = frame.clock
    if (frame.score !== undefined) game.score = frame.score
    for (const marketId of frame.removed ?? []) game.markets.delete(marketId)
    for (const market of frame.markets ?? []) game.markets.set(market.marketId, market)
    renderGame([...(frame.removed ?? []), ...(frame.markets ?? []).map((market) => market.marketId)])
  },
  bet: onBet,
  error(frame) {
    const bet = state.bets.get(state.refs.get(frame.ref))
    const text = `${frame.message} [${frame.code}]`
    const wait = frame.retryAfterMs === undefined ? '' : ` (retry in ${frame.retryAfterMs} ms)`
    if (bet === undefined) return showNotice(`${text}${wait}`)
    Object.assign(bet, { error: text, retryable: frame.code === 'BET_UNAVAILABLE' })
    renderBet(bet)
  },
}

// ---- the live matches --------------------------------------------------------------------------

/**
 * One button per live match with its score, the one followed marked current. The followed game's
 * score is its live one (the summary may be a refresh behind). Buttons are kept and updated in
 * place, not rebuilt, so a refresh does not take the keyboard focus away from one.
 */
function renderGames() {
  const list = byId('games-list')
  const shown = new Set()
  state.games.forEach(({ gameId, score: listed }, index) => {
    shown.add(gameId)
    const score = gameId === state.game?.gameId ? state.game.score : listed
    let item = gameNodes.get(gameId)
    if (item === undefined) {
      item = gameItem(gameId)
      gameNodes.set(gameId, item)
    }
    const button = item.firstChild
    const scoreText = `${score.home ?? 0} - ${score.away ?? 0}`
    if (button.lastChild.textContent !== scoreText) button.lastChild.textContent = scoreText
    if (gameId === state.gameId) button.setAttribute('aria-current', 'true')
    else button.removeAttribute('aria-current')
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] ?? null)
  })
  for (const [gameId, item] of gameNodes)
    if (!shown.has(gameId)) {
      item.remove()
      gameNodes.delete(gameId)
    }
}

function gameItem(gameId) {
  return el(
    'li',
    {},
    el(
      'button',
      {
        type: 'button',
        className: 'game-choice',
        testid: `game-${gameId}`,
        onclick: () => switchGame(gameId),
      },
      el('span', { className: 'game-id', text: gameId }),
      ' ',
      el('span', { className: 'game-score' }),
    ),
  )
}

// ---- the game ----------------------------------------------------------------------------------

function renderGame(changedMarketIds) {
  const score = state.game.score
  const sides = [...new Set(['home', 'away', ...Object.keys(score)])]
  byId('score').replaceChildren(
    ...sides.map((side) =>
      el('span', {}, `${side} `, el('b', { testid: `score-${side}` }, String(score[side] ?? 0)), ' '),
    ),
  )
  renderClock()
  renderMarkets(changedMarketIds)
  renderSlip()
  renderGames()
}

function clockText(clock) {
  if (clock === null) return '-'
  const nowMs = Date.now() + state.clockOffsetMs
  const clockMs = clock.running ? clock.clockMs + (nowMs - clock.atMs) : clock.clockMs
  const tenths = Math.max(0, Math.floor(clockMs / 100))
  const minutes = String(Math.floor(tenths / 600)).padStart(2, '0')
  const seconds = String(Math.floor(tenths / 10) % 60).padStart(2, '0')
  return `P${clock.period} ${minutes}:${seconds}.${tenths % 10}${clock.running ? '' : ' (stopped)'}`
}

function renderClock() {
  const text = clockText(state.game?.clock ?? null)
  if (byId('clock').textContent !== text) byId('clock').textContent = text
}

/** Closed markets go last, the most recently closed first; live ones keep the feed's order. */
function displayOrder(a, b) {
  const closedA = a.status === 'closed'
  if (closedA !== (b.status === 'closed')) return closedA ? 1 : -1
  return closedA ? b.sinceMs - a.sinceMs : 0
}

function renderMarkets(changedMarketIds) {
  const container = byId('markets')
  const markets = state.game?.markets ?? new Map()
  for (const marketId of new Set(changedMarketIds)) {
    const market = markets.get(marketId)
    const old = marketNodes.get(marketId)
    if (market === undefined) {
      old?.remove()
      marketNodes.delete(marketId)
      continue
    }
    const node = marketNode(market)
    old?.replaceWith(node)
    marketNodes.set(marketId, node)
  }
  // Move only what is out of place, so the nodes that stay keep their running tick animations.
  const ordered = [...markets.values()].sort(displayOrder)
  for (let index = 0; index < ordered.length; index++) {
    const node = marketNodes.get(ordered[index].marketId)
    if (container.children[index] !== node) container.insertBefore(node, container.children[index] ?? null)
  }
}

function marketNode(market) {
  const { marketId: id, status } = market
  const winners = market.result.state === 'agreed' ? market.result.winners : []
  const prices = market.selections.map((selection) => priceButton(market, selection, winners))
  return el(
    'article',
    { className: 'market', testid: `market-${id}`, 'data-market-status': status },
    el(
      'header',
      {},
      el('h3', { text: market.name }),
      el('span', { className: `badge badge-${status}`, testid: `status-${id}`, text: status }),
    ),
    el('div', { className: 'selections' }, ...prices),
    el('p', { className: 'result', testid: `result-${id}`, text: resultText(market, winners) }),
  )
}

function resultText(market, winners) {
  if (market.result.state === 'review') return 'Result under review'
  if (market.result.state === 'pending') return market.status === 'closed' ? 'Awaiting the result' : ''
  const names = winners.map((id) => market.selections.find((s) => s.id === id)?.name ?? id)
  return `Result: ${names.join(', ') || 'no winner'}`
}

function priceButton(market, selection, winners) {
  const { marketId } = market
  const odds = market.prices[selection.id]
  const key = `${marketId}\u0000${selection.id}`
  const before = state.lastOdds.get(key)
  const picked = state.slip?.marketId === marketId && state.slip.selectionId === selection.id
  const button = el(
    'button',
    {
      type: 'button',
      className: winners.includes(selection.id) ? 'price winner' : 'price',
      testid: `price-${marketId}-${selection.id}`,
      'aria-pressed': String(picked),
      onclick: () => pick(marketId, selection.id),
    },
    el('span', { className: 'name', text: selection.name }),
    el('span', { className: 'odds', text: odds === undefined ? '-' : formatOdds(odds) }),
  )
  button.disabled = market.status !== 'open' || odds === undefined
  if (odds === undefined) return button
  state.lastOdds.set(key, odds)
  if (before === undefined || before === odds) return button
  button.dataset.tick = odds > before ? 'up' : 'down'
  setTimeout(() => delete button.dataset.tick, TICK_SHOWN_MS)
  return button
}

// ---- the slip ----------------------------------------------------------------------------------

function pick(marketId, selectionId) {
  const previous = state.slip?.marketId
  state.slip = { marketId, selectionId }
  slipMessage('')
  renderMarkets(previous === undefined ? [marketId] : [previous, marketId])
  renderSlip()
  byId('slip-stake').focus()
}

/** The slip's selection as offered now: market, selection and price (undefined when none is offered). */
function slipOffer() {
  const market = state.slip === null ? undefined : state.game?.markets.get(state.slip.marketId)
  const selection = market?.selections.find((s) => s.id === state.slip.selectionId)
  return selection === undefined ? null : { market, selection, odds: market.prices[selection.id] }
}

function renderSlip() {
  const offer = slipOffer()
  const place = byId('slip-place')
  place.disabled = offer === null || offer.market.status !== 'open' || offer.odds === undefined
  if (offer === null) return setText('slip-selection')('Click a price to add it here.')
  const { market, selection, odds } = offer
  byId('slip-selection').replaceChildren(
    `${market.name}: ${selection.name} @ `,
    el('b', { testid: 'slip-odds', text: odds === undefined ? '-' : formatOdds(odds) }),
    place.disabled ? ` (${market.status})` : '',
  )
}

function place() {
  const clickMs = performance.now()
  const offer = slipOffer()
  if (offer === null || offer.market.status !== 'open' || offer.odds === undefined)
    return slipMessage('this price is not on offer now')
  const stakeCents = Math.round(Number(byId('slip-stake').value) * 100)
  if (!Number.isSafeInteger(stakeCents) || stakeCents < 1 || stakeCents > STAKE_CENTS_MAX)
    return slipMessage(`enter a stake between 0.01 and ${formatMoney(STAKE_CENTS_MAX)}`)
  const { market, selection, odds } = offer
  const betId = newBetId()
  const { marketId } = market
  const selectionId = selection.id
  const policy = byId('slip-policy').value
  const frame = { type: 'place', ref: nextRef('place'), betId, gameId: state.game.gameId }
  Object.assign(frame, { marketId, selectionId, stakeCents, odds, policy })
  if (!send(frame)) return slipMessage('not connected: the bet was not sent')
  slipMessage('')
  const label = `${market.name}: ${selection.name}`
  const bet = newBet(betId, { marketId, selectionId, stakeCents, odds, clickMs, frame, label })
  state.refs.set(frame.ref, betId)
  renderBet(bet)
  // Some refusals (rate limits) come without the frame's ref: do not let such a bet wait silently.
  setTimeout(() => {
    if (bet.status !== 'sent' || bet.error !== null) return
    Object.assign(bet, { error: 'no answer yet: the bet may still stand', retryable: true })
    renderBet(bet)
  }, PLACE_ANSWER_MS)
}

/** Place the same bet id again: the gateway answers with the bet's status, whatever came since. */
function askAgain(bet) {
  const frame = { ...bet.frame, ref: nextRef('place') }
  if (!send(frame)) return
  state.refs.set(frame.ref, bet.betId)
  Object.assign(bet, { error: null, retryable: false })
  renderBet(bet)
}

// ---- my bets -----------------------------------------------------------------------------------

function newBet(betId, fields = {}) {
  const bet = { betId, marketId: null, selectionId: null, stakeCents: null, odds: null, clickMs: null }
  Object.assign(bet, { frame: null, label: null, status: 'sent', steps: [], verdict: null, outcome: null })
  Object.assign(bet, { payoutCents: null, error: null, retryable: false, ...fields })
  bet.node = el('li', { className: 'bet', testid: `bet-${betId}` })
  state.bets.set(betId, bet)
  byId('bets').prepend(bet.node)
  return bet
}

function onBet(frame) {
  const bet = state.bets.get(frame.betId) ?? newBet(frame.betId)
  // Another body placed under this id was refused; the bet that stands goes on (its own statuses).
  if (frame.standing !== undefined) {
    bet.error = `a placement with other terms was refused: ${frame.message} [${frame.code}]`
    renderBet(bet)
    return
  }
  if (RANK[frame.status] <= RANK[bet.status]) return
  const latencyMs = bet.clickMs === null ? null : performance.now() - bet.clickMs
  Object.assign(bet, { status: frame.status, error: null, retryable: false })
  bet.steps.push({ status: frame.status, latencyMs })
  if (frame.status === 'settled')
    Object.assign(bet, { outcome: frame.outcome, payoutCents: frame.payoutCents })
  else if (frame.status === 'refused') bet.verdict = `refused: ${frame.message} [${frame.code}]`
  else bet.verdict = verdictText(frame.accepted, frame.reason)
  if (frame.accepted && frame.odds !== null) bet.odds = frame.odds
  if (frame.balanceCents !== undefined) {
    state.balanceVersion++
    setBalance(frame.balanceCents)
  }
  renderBet(bet)
}

function historyStatus(row) {
  if (row.funds === 'refused') return 'refused'
  if (row.settledAtMs !== null) return 'settled'
  return row.finalAtMs !== null ? 'final' : 'provisional'
}

/** A row of the history: a bet not seen yet, or a later status of one being shown. */
function mergeRow(row) {
  const status = historyStatus(row)
  const bet = state.bets.get(row.betId) ?? newBet(row.betId)
  if (RANK[status] <= RANK[bet.status]) return
  Object.assign(bet, { marketId: row.marketId, selectionId: row.selectionId, stakeCents: row.stakeCents })
  bet.odds ??= row.odds
  bet.status = status
  bet.steps.push({ status, latencyMs: null })
  if (status === 'refused') bet.verdict = 'refused: the stake could not be debited'
  else if (row.verdict !== null) bet.verdict = verdictText(row.verdict === 'accepted', row.reason)
  if (row.outcome !== null) Object.assign(bet, { outcome: row.outcome, payoutCents: row.payoutCents })
  renderBet(bet)
}

function betLabel(bet) {
  if (bet.label !== null || bet.marketId === null) return bet.label ?? bet.betId
  const market = state.game?.markets.get(bet.marketId)
  const selection = market?.selections.find((s) => s.id === bet.selectionId)
  return `${market?.name ?? bet.marketId}: ${selection?.name ?? bet.selectionId}`
}

function renderBet(bet) {
  const id = bet.betId
  const odds = bet.odds === null ? '' : ` @ ${formatOdds(bet.odds)}`
  const terms = bet.stakeCents === null ? '' : `${formatMoney(bet.stakeCents)}${odds}`
  const steps = bet.steps.map(({ status, latencyMs }) =>
    el(
      'span',
      { 'data-step': status },
      latencyMs === null ? status : `${status} in ${Math.round(latencyMs)} ms`,
    ),
  )
  const more = []
  if (bet.outcome !== null)
    more.push(
      el('p', { testid: `bet-${id}-outcome` }, `${bet.outcome}, paid ${formatMoney(bet.payoutCents)}`),
    )
  if (bet.error !== null) more.push(el('p', { className: 'bet-error', role: 'alert', text: bet.error }))
  if (bet.error !== null && bet.retryable && bet.frame !== null)
    more.push(el('button', { type: 'button', text: 'Ask again', onclick: () => askAgain(bet) }))
  bet.node.dataset.status = bet.status
  bet.node.replaceChildren(
    el(
      'div',
      { className: 'bet-head' },
      el('span', { text: betLabel(bet) }),
      el('span', { text: terms }),
      el('span', { className: `badge badge-${bet.status}`, text: bet.status }),
    ),
    el('p', { testid: `bet-${id}-verdict`, text: bet.verdict ?? 'awaiting the verdict' }),
    el('p', { className: 'bet-steps', testid: `bet-${id}-steps` }, ...steps),
    ...more,
  )
}

// ---- start -------------------------------------------------------------------------------------

byId('login-form').addEventListener('submit', login)
byId('logout').addEventListener('click', () => logout('logged out'))
byId('slip-place').addEventListener('click', place)
setInterval(renderClock, CLOCK_REFRESH_MS)
const saved = savedSession()
if (saved !== null) start(saved)
