"""Every intake route, in one place."""

from aiohttp import web

from services.intake import nft, views
from services.intake.mint import post_mint


def setup_routes(app: web.Application) -> None:
    app.router.add_post("/mint", post_mint)
    app.router.add_post("/nft/render", nft.post_render)
    app.router.add_get("/nft/job/{jobId}", nft.get_job)
    app.router.add_get("/queue/status", views.queue_status)
    app.router.add_get("/queue/payer/{address}", views.payer_queue)
    app.router.add_get("/queue/item/{queueId}", views.queue_item)
    app.router.add_get("/info", views.info)
    app.router.add_get("/health", views.health)
    app.router.add_get("/metrics", views.metrics)
