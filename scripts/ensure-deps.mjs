// Makes a fresh clone runnable: installs the locked npm dependencies when they are missing or
// older than package-lock.json, and with --nats installs nats-server (Debian package) when it is
// not on the PATH. Plain JavaScript with no dependencies, since it runs before they exist.

import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const lockFile = join(root, 'package-lock.json')
const installedMarker = join(root, 'node_modules', '.package-lock.json')

function run(command, args) {
  console.log(`> ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' })
  if (result.status !== 0) {
    console.error(`${command} failed (exit ${result.status ?? result.signal})`)
    process.exit(1)
  }
}

function hasCommand(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

const stale = !existsSync(installedMarker) || statSync(installedMarker).mtimeMs < statSync(lockFile).mtimeMs
if (stale) {
  run('npm', ['ci', '--no-audit', '--no-fund'])
  // tap builds its plugin set from the config lazily, after a first run has started with the
  // defaults; build it now so every run uses the tsx loader alone (see README, Development).
  run('npx', ['tap', 'build'])
}

if (process.argv.includes('--nats') && !hasCommand('nats-server')) {
  const isRoot = process.getuid?.() === 0
  if (!isRoot || !hasCommand('apt-get')) {
    console.error(
      'nats-server is not installed: install it (Debian: apt-get install nats-server) and run again',
    )
    process.exit(1)
  }
  run('apt-get', ['update', '-qq'])
  run('apt-get', ['install', '-y', '-qq', 'nats-server'])
  console.log(execFileSync('nats-server', ['--version']).toString().trim())
}
