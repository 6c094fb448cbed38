"""The ERC-721 metadata document of a rendered NFT (what its tokenURI points to)."""

from typing import Any

from shared.render_settings import RenderSettings


def nft_metadata(settings: RenderSettings, image_cid: str) -> dict[str, Any]:
    """Deterministic (no timestamps), so a re-pinned document gets the same CID."""
    return {
        "name": settings.name,
        "description": (
            f"A mintline Gen1 animation: a {settings.shape} on the {settings.palette} palette, "
            f"{settings.frames} frames, seed {settings.seed}."
        ),
        "image": f"ipfs://{image_cid}",
        "attributes": settings.attributes(),
    }
