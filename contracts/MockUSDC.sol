// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MockUSDC
/// @notice Stand-in for Circle's USDC on local chains. It reproduces the parts of FiatTokenV2_2 that
/// mintline and x402 rely on (6 decimals, an EIP-712 domain whose name is the token's name, `version()`,
/// `DOMAIN_SEPARATOR()` and EIP-3009 with the same type hashes and revert messages), so signatures made
/// for it are valid for real USDC too. The domain is a constructor argument because real deployments
/// differ: "USD Coin"/"2" on Ethereum, "USDC"/"2" on Base Sepolia. Unlike FiatTokenV2_2 it also answers
/// ERC-5267's `eip712Domain()`.
/// @dev `mint` and `mintMany` are unrestricted: never deploy this contract to a public network.
contract MockUSDC is ERC20, EIP712 {
    bytes32 public constant TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(
        "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    );
    bytes32 public constant CANCEL_AUTHORIZATION_TYPEHASH =
        keccak256("CancelAuthorization(address authorizer,bytes32 nonce)");

    mapping(address authorizer => mapping(bytes32 nonce => bool used)) private _authorizationStates;

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);
    event AuthorizationCanceled(address indexed authorizer, bytes32 indexed nonce);

    constructor(string memory name_, string memory version_) ERC20(name_, "USDC") EIP712(name_, version_) {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The EIP-712 domain's version, as FiatTokenV2_2 names it.
    function version() external view returns (string memory) {
        return _EIP712Version();
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Funds many test wallets in one transaction.
    function mintMany(address[] calldata to, uint256 amount) external {
        for (uint256 i = 0; i < to.length; ++i) {
            _mint(to[i], amount);
        }
    }

    function authorizationState(address authorizer, bytes32 nonce) external view returns (bool) {
        return _authorizationStates[authorizer][nonce];
    }

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
    ) external {
        bytes32 digest =
            _authorizationDigest(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        (address signer,,) = ECDSA.tryRecover(digest, v, r, s);
        _useAuthorization(signer, from, to, value, nonce);
    }

    /// @dev The `bytes` overloads exist because FiatTokenV2_2 has them and x402 clients may call them.
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        bytes32 digest =
            _authorizationDigest(TRANSFER_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        (address signer,,) = ECDSA.tryRecover(digest, signature);
        _useAuthorization(signer, from, to, value, nonce);
    }

    /// @notice Like transferWithAuthorization, but only the payee may submit it, which stops a
    /// front-runner from settling the authorization outside the payee's own transaction.
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        bytes32 digest =
            _authorizationDigest(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        (address signer,,) = ECDSA.tryRecover(digest, v, r, s);
        _useAuthorization(signer, from, to, value, nonce);
    }

    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes calldata signature
    ) external {
        require(to == msg.sender, "FiatTokenV2: caller must be the payee");
        bytes32 digest =
            _authorizationDigest(RECEIVE_WITH_AUTHORIZATION_TYPEHASH, from, to, value, validAfter, validBefore, nonce);
        (address signer,,) = ECDSA.tryRecover(digest, signature);
        _useAuthorization(signer, from, to, value, nonce);
    }

    function cancelAuthorization(address authorizer, bytes32 nonce, uint8 v, bytes32 r, bytes32 s) external {
        (address signer,,) = ECDSA.tryRecover(_cancelDigest(authorizer, nonce), v, r, s);
        _cancelAuthorization(signer, authorizer, nonce);
    }

    function cancelAuthorization(address authorizer, bytes32 nonce, bytes calldata signature) external {
        (address signer,,) = ECDSA.tryRecover(_cancelDigest(authorizer, nonce), signature);
        _cancelAuthorization(signer, authorizer, nonce);
    }

    /// @dev Checks the time window and nonce before hashing, in the same order as FiatTokenV2_2, so
    /// callers see the same revert message for the same problem.
    function _authorizationDigest(
        bytes32 typeHash,
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce
    ) private view returns (bytes32) {
        require(block.timestamp > validAfter, "FiatTokenV2: authorization is not yet valid");
        require(block.timestamp < validBefore, "FiatTokenV2: authorization is expired");
        _requireUnusedAuthorization(from, nonce);
        return _hashTypedDataV4(keccak256(abi.encode(typeHash, from, to, value, validAfter, validBefore, nonce)));
    }

    function _cancelDigest(address authorizer, bytes32 nonce) private view returns (bytes32) {
        _requireUnusedAuthorization(authorizer, nonce);
        return _hashTypedDataV4(keccak256(abi.encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce)));
    }

    function _useAuthorization(address signer, address from, address to, uint256 value, bytes32 nonce) private {
        _requireSigner(signer, from);
        _authorizationStates[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        _transfer(from, to, value);
    }

    function _cancelAuthorization(address signer, address authorizer, bytes32 nonce) private {
        _requireSigner(signer, authorizer);
        _authorizationStates[authorizer][nonce] = true;
        emit AuthorizationCanceled(authorizer, nonce);
    }

    function _requireUnusedAuthorization(address authorizer, bytes32 nonce) private view {
        require(!_authorizationStates[authorizer][nonce], "FiatTokenV2: authorization is used or canceled");
    }

    /// @dev tryRecover returns address(0) for every malformed signature, so rejecting address(0) also
    /// rejects those (and stops anyone from moving funds "signed" by the zero address).
    function _requireSigner(address signer, address expected) private pure {
        require(signer != address(0) && signer == expected, "FiatTokenV2: invalid signature");
    }
}
