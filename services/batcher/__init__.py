"""The batcher: the only holder of the wallet key. Builds, signs and broadcasts batchMint transactions."""
