"""The web app: server-rendered pages (Jinja2 + HTMX) over the same services as the API.

:func:`install` adds the pages, the static files and the HTML problem pages to the
FastAPI application. Views parse a form, call the domain services (the same ones the
API routers call) and render; business rules never live here.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from omnify.web import errors
from omnify.web.templating import assets, render


def install(app: FastAPI) -> None:
    from omnify.web.views import ROUTERS

    @app.get("/static/{path:path}", include_in_schema=False)
    async def static(request: Request, path: str) -> Response:
        return assets().response(request, path)

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        return render(request, "docs.html", {"title": app.title, "openapi_url": app.openapi_url},
                      headers={"Cache-Control": "public, max-age=300"})

    for router in ROUTERS:
        app.include_router(router)
    errors.install(app)
