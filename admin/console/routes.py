"""Every console route, in one place (openapi.py describes each; a unit test keeps them the same)."""

from aiohttp import web

from admin.console import actions, live, openapi, page, views


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/health", views.health)
    app.router.add_get("/openapi.json", openapi.serve)
    app.router.add_get("/", page.console_page)
    app.router.add_get("/static/{filename}", page.static_file)
    app.router.add_get("/events/overview", live.overview_events, allow_head=False)
    app.router.add_get("/api/overview", views.overview)
    app.router.add_get("/api/requests", views.requests)
    app.router.add_get("/api/requests/{id}", views.request_detail)
    app.router.add_get("/api/batches", views.batches)
    app.router.add_get("/api/batches/{id}", views.batch_detail)
    app.router.add_get("/api/renders", views.render_jobs)
    app.router.add_get("/api/renders/{id}/image", views.render_image)
    app.router.add_get("/api/settings", views.settings_list)
    app.router.add_get("/api/priorities", views.priorities_list)
    app.router.add_get("/api/audit", views.audit_list)
    app.router.add_post("/api/actions/retry-failed", actions.retry_failed)
    app.router.add_post("/api/actions/reset-stuck", actions.reset_stuck)
    app.router.add_post("/api/actions/replay-streams", actions.replay_streams)
    app.router.add_post("/api/actions/requeue-dead", actions.requeue_dead)
    app.router.add_put("/api/settings/{key}", actions.put_setting)
    app.router.add_put("/api/priorities/{payer}", actions.put_priority)
