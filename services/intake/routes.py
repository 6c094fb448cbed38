"""Every intake route, in one place."""

from aiohttp import web

from services.intake import live, nft, openapi, views
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
    app.router.add_get("/openapi.json", openapi.serve)
    # The live status page and its Server-Sent Event streams.
    app.router.add_get("/", live.status_page)
    app.router.add_get("/static/{filename}", live.static_file)
    app.router.add_get("/events/item/{queueId}", live.item_events, allow_head=False)
    app.router.add_get("/events/queue", live.queue_events, allow_head=False)
