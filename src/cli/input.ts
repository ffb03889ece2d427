/**
 * Reading what commands take from files, stdin and JSON arguments. Secrets (passwords, topic secrets) are only
 * ever read from files or stdin, never from argv, where `ps` would show them.
 */
import { readFile } from 'node:fs/promises'
import { InvalidArgumentError } from 'commander'
import { UsageError, type CliContext } from './context.js'

/** Reads a file, or stdin for `-`. A missing or unreadable file is a usage error. */
export async function readInput (c: CliContext, path: string, what: string): Promise<string> {
  if (path === '-') return await c.readStdin()
  try {
    return await readFile(path, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
}

/** A password or secret from a file (or stdin with `-`): its first line, which must not be empty. */
export async function readSecret (c: CliContext, path: string, what = 'password'): Promise<string> {
  const text = await readInput(c, path, what)
  const secret = text.split(/\r?\n/, 1)[0]
  if (secret === '') throw new UsageError(`the ${what} in ${path === '-' ? 'stdin' : path} is empty`)
  return secret
}

/** Parses JSON text that must be an object; `what` names it in the error. */
export function parseJsonObject (text: string, what: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${what} must be a JSON object`)
  return value as Record<string, unknown>
}

/** Reads a JSON object from a file (or stdin with `-`). */
export async function readJsonObject (c: CliContext, path: string, what: string): Promise<Record<string, unknown>> {
  return parseJsonObject(await readInput(c, path, what), `${what} file ${path}`)
}

/** commander argument parser: a JSON object. */
export function jsonObjectArg (value: string): Record<string, unknown> {
  try {
    return parseJsonObject(value, 'the value')
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message)
  }
}

/** commander argument parser: a positive integer. */
export function positiveIntArg (value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer')
  return n
}

/** commander argument parser: a positive number. */
export function positiveNumberArg (value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number')
  return n
}

/** commander argument parser that collects repeated options into an array. */
export function collect (value: string, previous: string[] = []): string[] {
  return [...previous, value]
}
