// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {MockUSDC} from "contracts/MockUSDC.sol";

/// @title LegacyDomainUSDC
/// @notice MockUSDC without ERC-5267, as Circle's FiatTokenV2_2 (USDC on Ethereum, Base and Base
/// Sepolia) is: its EIP-712 domain can only be learned from name(), version() and DOMAIN_SEPARATOR().
/// Tests only; built with `node contracts/build.js --with tests/contracts/LegacyDomainUSDC.sol`.
contract LegacyDomainUSDC is MockUSDC {
    constructor(string memory name_, string memory version_) MockUSDC(name_, version_) {}

    /// @dev Reverts with no data, as a call of a function the contract does not have does.
    function eip712Domain()
        public
        pure
        override
        returns (bytes1, string memory, string memory, uint256, address, bytes32, uint256[] memory)
    {
        revert();
    }
}
