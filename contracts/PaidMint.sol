// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @notice The EIP-3009 entry point of USDC (FiatTokenV2_2) that payments are settled with.
interface IERC3009 {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;
}

/// @title PaidMint
/// @notice What mintline's mint contracts share: each batch entry is one paid order, identified by its
/// `paymentId`, optionally carrying the payer's EIP-3009 authorization, which is settled to the
/// treasury in the same transaction as the mint, so a payer is charged if and only if they are served.
abstract contract PaidMint {
    /// @dev `from == address(0)` means the payment was already made off-contract and verified by the
    /// backend; there is nothing to settle.
    struct Authorization {
        address from;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    address public immutable usdc;
    address public immutable treasury;
    uint256 public immutable price;

    /// @notice Payment ids that have been minted for; makes re-sent batches idempotent.
    mapping(bytes32 paymentId => bool) public processed;

    event MintSkipped(bytes32 indexed paymentId, address indexed to, string reason);

    constructor(address usdc_, address treasury_, uint256 price_) {
        usdc = usdc_;
        treasury = treasury_;
        price = price_;
    }

    /// @dev Whether an entry may mint: a new payment, a recipient, and a settled authorization if it
    /// carries one; marks the payment processed. Otherwise emits MintSkipped with the reason and leaves
    /// the payment unprocessed, so it can be retried in a later batch. Never reverts for a bad entry,
    /// so one bad payment never blocks the others in its batch.
    function _admit(bytes32 paymentId, address to, Authorization calldata auth) internal returns (bool) {
        if (processed[paymentId]) {
            // Never settle again: the payer has already been served for this payment.
            emit MintSkipped(paymentId, to, "already processed");
            return false;
        }
        if (to == address(0)) {
            // Minting to the zero address would revert and take the whole batch down with it.
            emit MintSkipped(paymentId, to, "invalid recipient");
            return false;
        }
        if (auth.from != address(0) && !_settle(paymentId, to, auth)) {
            return false;
        }
        processed[paymentId] = true;
        return true;
    }

    /// @dev Moves the payment to the treasury; on failure emits MintSkipped and returns false. Running
    /// out of gas reverts the whole batch instead: if the USDC call runs out, the 1/64 of the gas that
    /// EIP-150 keeps back is far too little to finish the entry.
    function _settle(bytes32 paymentId, address to, Authorization calldata auth) private returns (bool) {
        if (auth.from != to) {
            emit MintSkipped(paymentId, to, "payer mismatch");
            return false;
        }
        if (auth.value < price) {
            emit MintSkipped(paymentId, to, "underpaid");
            return false;
        }
        try IERC3009(usdc).transferWithAuthorization(
            auth.from, treasury, auth.value, auth.validAfter, auth.validBefore, auth.nonce, auth.v, auth.r, auth.s
        ) {
            return true;
        } catch Error(string memory reason) {
            emit MintSkipped(paymentId, to, string.concat("authorization failed: ", reason));
        } catch {
            // Custom errors such as ERC20InsufficientBalance carry no reason string.
            emit MintSkipped(paymentId, to, "authorization failed");
        }
        return false;
    }
}
