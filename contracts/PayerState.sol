// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

interface IUSDCState {
    function balanceOf(address account) external view returns (uint256);
    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
}

/// @title PayerState
/// @notice Never deployed: intake sends this contract's creation code, with its constructor
/// arguments, as an `eth_call` without a `to` (a "deployless" call), and the constructor returns the
/// payer's USDC balance and whether each authorization nonce is used, all read in one block. A balance
/// read in one block and nonce states read in another could count a settled payment twice or not at
/// all; one call cannot.
contract PayerState {
    constructor(address usdc, address payer, bytes32[] memory nonces) {
        IUSDCState token = IUSDCState(usdc);
        uint256 balance = token.balanceOf(payer);
        bool[] memory used = new bool[](nonces.length);
        for (uint256 i = 0; i < nonces.length; ++i) {
            used[i] = token.authorizationState(payer, nonces[i]);
        }
        bytes memory result = abi.encode(block.number, balance, used);
        assembly {
            return(add(result, 32), mload(result))
        }
    }
}
