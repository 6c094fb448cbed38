"""The renderer: draws NFT GIFs and pins them (see the renderer issue)."""
