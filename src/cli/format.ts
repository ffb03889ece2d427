/** Small formatters shared by the commands' human output. */

/** `1.5 KiB`, `3.2 MiB`... */
export function bytes (n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB']
  let v = n / 1024
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`
}

/** `45s`, `3m20s`, `2h05m`. */
export function duration (seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
}

/** `12s ago`, or `never`. */
export function ago (t?: number, now = Date.now()): string {
  return t === undefined ? 'never' : `${duration((now - t) / 1000)} ago`
}

/** An ISO timestamp without milliseconds, or `-`. */
export function time (t?: number): string {
  return t === undefined ? '-' : new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z')
}

/** Compact JSON cut to `max` characters. */
export function brief (value: unknown, max = 80): string {
  const text = JSON.stringify(value) ?? ''
  return text.length <= max ? text : text.slice(0, max - 1) + '…'
}

/** A plural: `1 change`, `2 changes`. */
export function count (n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}
