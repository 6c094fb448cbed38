// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {PaidMint} from "./PaidMint.sol";

/// @title MintToken
/// @notice ERC20 that the mintline batcher mints in batches, one entry per paid order (see PaidMint).
contract MintToken is ERC20, AccessControl, PaidMint {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    struct MintEntry {
        address to;
        bytes32 paymentId;
        Authorization auth;
    }

    uint256 public immutable mintAmount;

    event Minted(bytes32 indexed paymentId, address indexed to, uint256 amount);

    constructor(
        string memory name,
        string memory symbol,
        address usdc_,
        address treasury_,
        uint256 price_,
        uint256 mintAmount_,
        address admin
    ) ERC20(name, symbol) PaidMint(usdc_, treasury_, price_) {
        mintAmount = mintAmount_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mints `mintAmount` for every entry that is new and, if it carries an authorization,
    /// whose payment settles; bad entries are skipped with a MintSkipped event.
    function batchMint(MintEntry[] calldata entries) external onlyRole(MINTER_ROLE) {
        for (uint256 i = 0; i < entries.length; ++i) {
            MintEntry calldata entry = entries[i];
            if (_admit(entry.paymentId, entry.to, entry.auth)) {
                _mint(entry.to, mintAmount);
                emit Minted(entry.paymentId, entry.to, mintAmount);
            }
        }
    }
}
