/** The part of sodium-native (libsodium bindings) this project uses: Ed25519 signing and checking. */
declare module 'sodium-native' {
  const sodium: {
    crypto_sign_BYTES: number
    crypto_sign_PUBLICKEYBYTES: number
    crypto_sign_SECRETKEYBYTES: number
    /** Fills `publicKey` and `secretKey` (seed then public key) from a 32-byte seed. */
    crypto_sign_seed_keypair: (publicKey: Uint8Array, secretKey: Uint8Array, seed: Uint8Array) => void
    /** Writes the detached signature of `message` into `signature`. */
    crypto_sign_detached: (signature: Uint8Array, message: Uint8Array, secretKey: Uint8Array) => void
    /** True when `signature` is valid for `message` and `publicKey` (libsodium's strict check). */
    crypto_sign_verify_detached: (signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array) => boolean
  }
  export default sodium
}
