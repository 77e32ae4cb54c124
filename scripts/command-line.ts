/**
 * The command lines of the scripts and benchmarks: node's `parseArgs`, with `--help`, and with a
 * clear message and the usage, instead of a stack trace, for an unknown or malformed option.
 */

import { type ParseArgsConfig, parseArgs } from 'node:util'

type Options = NonNullable<ParseArgsConfig['options']>
type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ options: O; strict: true; allowPositionals: false }>
>['values']

export function parseCommandLine<const O extends Options>(options: O, usage: string): Values<O> {
  const config = {
    options: { ...options, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  } as const
  let values: Record<string, unknown>
  try {
    values = parseArgs(config).values
  } catch (error) {
    console.error(`${(error as Error).message}\nusage: ${usage}`)
    process.exit(1)
  }
  if (values.help === true) {
    console.log(`usage: ${usage}`)
    process.exit(0)
  }
  return values as Values<O>
}

/** Print the problem and the usage, and exit 1. */
export function usageError(problem: string, usage: string): never {
  console.error(`${problem}\nusage: ${usage}`)
  process.exit(1)
}
