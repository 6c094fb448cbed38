// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @notice The EIP-3009 entry point of USDC (FiatTokenV2_2) that MintToken settles payments with.
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

/// @title MintToken
/// @notice ERC20 that the mintline batcher mints in batches, one entry per paid order. Each entry can
/// carry the payer's EIP-3009 authorization, which is settled to the treasury in the same transaction
/// as the mint, so a payer is charged if and only if they receive their tokens.
contract MintToken is ERC20, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

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

    struct MintEntry {
        address to;
        bytes32 paymentId;
        Authorization auth;
    }

    address public immutable usdc;
    address public immutable treasury;
    uint256 public immutable price;
    uint256 public immutable mintAmount;

    /// @notice Payment ids that have been minted for; makes re-sent batches idempotent.
    mapping(bytes32 paymentId => bool) public processed;

    event Minted(bytes32 indexed paymentId, address indexed to, uint256 amount);
    event MintSkipped(bytes32 indexed paymentId, address indexed to, string reason);

    constructor(
        string memory name,
        string memory symbol,
        address usdc_,
        address treasury_,
        uint256 price_,
        uint256 mintAmount_,
        address admin
    ) ERC20(name, symbol) {
        usdc = usdc_;
        treasury = treasury_;
        price = price_;
        mintAmount = mintAmount_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mints for every entry that is new and, if it carries an authorization, whose payment
    /// settles. Bad entries are skipped with a MintSkipped event instead of reverting, so one bad
    /// payment never blocks the others in its batch.
    /// @dev A skipped entry is not marked processed, so it can be retried in a later batch. Running out
    /// of gas reverts the whole batch instead of skipping: if the USDC call runs out, the 1/64 of the
    /// gas that EIP-150 keeps back is far too little to finish the entry.
    function batchMint(MintEntry[] calldata entries) external onlyRole(MINTER_ROLE) {
        for (uint256 i = 0; i < entries.length; ++i) {
            MintEntry calldata entry = entries[i];
            if (processed[entry.paymentId]) {
                // Never settle again: the payer has already been served for this payment.
                emit MintSkipped(entry.paymentId, entry.to, "already processed");
                continue;
            }
            if (entry.to == address(0)) {
                // _mint would revert and take the whole batch down with it.
                emit MintSkipped(entry.paymentId, entry.to, "invalid recipient");
                continue;
            }
            if (entry.auth.from != address(0) && !_settle(entry)) {
                continue;
            }
            processed[entry.paymentId] = true;
            _mint(entry.to, mintAmount);
            emit Minted(entry.paymentId, entry.to, mintAmount);
        }
    }

    /// @dev Moves the payment to the treasury; on failure emits MintSkipped and returns false.
    function _settle(MintEntry calldata entry) private returns (bool) {
        Authorization calldata auth = entry.auth;
        if (auth.from != entry.to) {
            emit MintSkipped(entry.paymentId, entry.to, "payer mismatch");
            return false;
        }
        if (auth.value < price) {
            emit MintSkipped(entry.paymentId, entry.to, "underpaid");
            return false;
        }
        try IERC3009(usdc).transferWithAuthorization(
            auth.from, treasury, auth.value, auth.validAfter, auth.validBefore, auth.nonce, auth.v, auth.r, auth.s
        ) {
            return true;
        } catch Error(string memory reason) {
            emit MintSkipped(entry.paymentId, entry.to, string.concat("authorization failed: ", reason));
        } catch {
            // Custom errors such as ERC20InsufficientBalance carry no reason string.
            emit MintSkipped(entry.paymentId, entry.to, "authorization failed");
        }
        return false;
    }
}
