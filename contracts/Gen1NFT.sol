// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC3009} from "./MintToken.sol";

/// @title Gen1NFT
/// @notice ERC-721 that the mintline batcher mints in batches once the renderer has pinned each
/// token's GIF and metadata: one entry per paid render, with the metadata `ipfs://` URI as its
/// tokenURI. Same per-entry isolation and paymentId deduplication as MintToken, and the payer's
/// EIP-3009 authorization is settled in the same transaction as the mint.
contract Gen1NFT is ERC721URIStorage, AccessControl {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @dev `from == address(0)`: the payment was made off-contract and verified by the backend.
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
        string tokenURI;
        Authorization auth;
    }

    address public immutable usdc;
    address public immutable treasury;
    uint256 public immutable price;

    /// @notice Payment ids that have been minted for; makes re-sent batches idempotent.
    mapping(bytes32 paymentId => bool) public processed;
    uint256 public totalSupply;

    /// @dev Same signature as MintToken's Minted (the third field is the token id here), so one
    /// receipt reader serves both contracts.
    event Minted(bytes32 indexed paymentId, address indexed to, uint256 tokenId);
    event MintSkipped(bytes32 indexed paymentId, address indexed to, string reason);

    constructor(
        string memory name,
        string memory symbol,
        address usdc_,
        address treasury_,
        uint256 price_,
        address admin
    ) ERC721(name, symbol) {
        usdc = usdc_;
        treasury = treasury_;
        price = price_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mints one token per entry that is new, has a tokenURI and, if it carries an
    /// authorization, whose payment settles. Bad entries are skipped with MintSkipped, never reverted.
    /// @dev A skipped entry is not marked processed, so it can be retried in a later batch. Token ids
    /// start at 1. `_mint` (not `_safeMint`): a contract recipient that rejects ERC-721s must not be
    /// able to revert the other entries of the batch.
    function batchMint(MintEntry[] calldata entries) external onlyRole(MINTER_ROLE) {
        for (uint256 i = 0; i < entries.length; ++i) {
            MintEntry calldata entry = entries[i];
            if (processed[entry.paymentId]) {
                emit MintSkipped(entry.paymentId, entry.to, "already processed");
                continue;
            }
            if (entry.to == address(0)) {
                emit MintSkipped(entry.paymentId, entry.to, "invalid recipient");
                continue;
            }
            if (bytes(entry.tokenURI).length == 0) {
                emit MintSkipped(entry.paymentId, entry.to, "empty tokenURI");
                continue;
            }
            if (entry.auth.from != address(0) && !_settle(entry)) {
                continue;
            }
            processed[entry.paymentId] = true;
            uint256 tokenId = ++totalSupply;
            _mint(entry.to, tokenId);
            _setTokenURI(tokenId, entry.tokenURI);
            emit Minted(entry.paymentId, entry.to, tokenId);
        }
    }

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
            emit MintSkipped(entry.paymentId, entry.to, "authorization failed");
        }
        return false;
    }

    /// @dev ERC721URIStorage and AccessControl both implement ERC-165.
    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721URIStorage, AccessControl)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }
}
