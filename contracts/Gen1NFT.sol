// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {PaidMint} from "./PaidMint.sol";

/// @title Gen1NFT
/// @notice ERC-721 that the mintline batcher mints in batches once the renderer has pinned each
/// token's GIF and metadata: one entry per paid render (see PaidMint), with the metadata `ipfs://` URI
/// as its tokenURI.
contract Gen1NFT is ERC721URIStorage, AccessControl, PaidMint {
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    struct MintEntry {
        address to;
        bytes32 paymentId;
        string tokenURI;
        Authorization auth;
    }

    uint256 public totalSupply;

    /// @dev Same signature as MintToken's Minted (the third field is the token id here), so one
    /// receipt reader serves both contracts.
    event Minted(bytes32 indexed paymentId, address indexed to, uint256 tokenId);

    constructor(string memory name, string memory symbol, address usdc_, address treasury_, uint256 price_, address admin)
        ERC721(name, symbol)
        PaidMint(usdc_, treasury_, price_)
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @notice Mints one token per entry that has a tokenURI, is new and, if it carries an
    /// authorization, whose payment settles; bad entries are skipped with MintSkipped.
    /// @dev Token ids start at 1. `_mint` (not `_safeMint`): a contract recipient that rejects ERC-721s
    /// must not be able to revert the other entries of the batch.
    function batchMint(MintEntry[] calldata entries) external onlyRole(MINTER_ROLE) {
        for (uint256 i = 0; i < entries.length; ++i) {
            MintEntry calldata entry = entries[i];
            if (bytes(entry.tokenURI).length == 0) {
                emit MintSkipped(entry.paymentId, entry.to, "empty tokenURI");
                continue;
            }
            if (_admit(entry.paymentId, entry.to, entry.auth)) {
                uint256 tokenId = ++totalSupply;
                _mint(entry.to, tokenId);
                _setTokenURI(tokenId, entry.tokenURI);
                emit Minted(entry.paymentId, entry.to, tokenId);
            }
        }
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
