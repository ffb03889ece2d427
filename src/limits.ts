/**
 * Every limit that bounds what a peer can make this node spend (memory, CPU, time, connections), in one place.
 * Each constant says what it bounds and why its value is safe; `SECURITY.md` cites them.
 *
 * Sections: sync sessions and reconciliation (src/sync), the node and its connections (src/p2p).
 */

// ---------------------------------------------------------------- sync sessions and reconciliation (src/sync)

// ---------------------------------------------------------------- the node and its connections (src/p2p)
