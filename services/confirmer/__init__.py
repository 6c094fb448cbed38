"""The confirmer: receipts, confirmations, reorgs, and the outcome of every entry of a batch."""
