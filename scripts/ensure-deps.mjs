// Makes a fresh clone runnable: installs the locked npm dependencies when they are missing or
// older than package-lock.json; with --nats installs nats-server, and with --chromium the
// browser the page test drives (Debian packages), when they are not on the machine. Plain JavaScript with no dependencies, since it runs before they exist.

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

/** Install a Debian package whose command is missing; only root with apt-get can. */
function ensureDebianPackage(command, pkg, versionArgs) {
  if (hasCommand(command)) return
  const isRoot = process.getuid?.() === 0
  if (!isRoot || !hasCommand('apt-get')) {
    console.error(`${command} is not installed: install it (Debian: apt-get install ${pkg}) and run again`)
    process.exit(1)
  }
  run('apt-get', ['update', '-qq'])
  run('apt-get', ['install', '-y', '-qq', pkg])
  console.log(execFileSync(command, versionArgs).toString().trim())
}

if (process.argv.includes('--nats')) ensureDebianPackage('nats-server', 'nats-server', ['--version'])
if (process.argv.includes('--chromium')) ensureDebianPackage('chromium', 'chromium', ['--version'])
