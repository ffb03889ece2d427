/**
 * What the CLI prints comes in part from elsewhere: error texts of rounds (a partner wrote them), document contents,
 * share and peer fields, the daemon's own error messages. A terminal interprets control characters and escape
 * sequences in them (move the cursor, rewrite lines, set the window title, hyperlinks, in some terminals worse), so
 * every piece of text the CLI writes goes through one of these two functions (the CLI context applies them to
 * `print`, `note` and the error line; see `safeContext`).
 *
 * - `cleanText` (human output): removes whole escape sequences (ESC or C1 introduced: CSI, OSC, DCS, SOS, PM, APC
 *   with their parameters and terminator, and two-character ESC sequences), then every remaining C0 control except
 *   newline and tab, DEL and every C1 control, and the Unicode bidirectional overrides and isolates (text that
 *   displays in another order than it reads).
 * - `cleanJson` (`--json`): JSON.stringify already escapes C0 controls inside strings; DEL, C1 and the bidi controls
 *   it leaves raw, so they are written as `\u` escapes: the value parses back to exactly the same data.
 */

/** ESC or 8-bit C1 introduced sequences: string sequences up to their terminator, CSI with parameters, ESC + one. */
const SEQUENCES = new RegExp([
  // OSC, DCS, SOS, PM, APC: up to BEL or ST (ESC \ or 0x9C), or to the end when unterminated
  '(?:\\u001b[\\]PX^_]|[\\u0090\\u0098\\u009d-\\u009f])[\\s\\S]*?(?:\\u0007|\\u001b\\\\|\\u009c|$)',
  // CSI: parameters and intermediates, then a final byte
  '(?:\\u001b\\[|\\u009b)[\\u0030-\\u003f]*[\\u0020-\\u002f]*[\\u0040-\\u007e]?',
  // other ESC sequences: intermediates, then one final character
  '\\u001b[\\u0020-\\u002f]*[\\u0030-\\u007e]?'
].join('|'), 'g')

/** C0 except tab and newline, DEL, C1; and the bidi embeddings, overrides and isolates. */
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g // eslint-disable-line no-control-regex

/** Characters JSON.stringify leaves raw that a terminal may act on. */
const JSON_RAW = /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

/** Text for a terminal: no escape sequence and no control character but newline and tab. */
export function cleanText (text: string): string {
  return text.replace(SEQUENCES, '').replace(CONTROLS, '')
}

/** JSON for a terminal or a pipe: the same value, with DEL, C1 and bidi controls written as `\u` escapes. */
export function cleanJson (value: unknown): string {
  const text = JSON.stringify(value, null, 2) ?? 'null'
  return text.replace(JSON_RAW, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'))
}
