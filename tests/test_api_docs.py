"""`/docs` works offline: Swagger UI's assets are served by the API, not a CDN (issue 22)."""

from __future__ import annotations

import httpx

from missed_session.api.app import SWAGGER_UI, create_app
from missed_session.api.settings import ApiSettings
from missed_session.application.service import Application
from missed_session.config import Settings
from tests.support.servers import TEST_KEYS


async def test_docs_and_their_assets_come_from_the_api_itself() -> None:
    application = Application(Settings(encryption_keys=TEST_KEYS))
    api = create_app(application, ApiSettings(), deliver_kept_texts=False)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert "cdn." not in page.text
        assert "https://" not in page.text
        script = f"/docs/static/swagger-ui-{SWAGGER_UI}-bundle.js"
        sheet = f"/docs/static/swagger-ui-{SWAGGER_UI}.css"
        assert script in page.text
        assert sheet in page.text
        js, css = await http.get(script), await http.get(sheet)
        assert js.status_code == css.status_code == 200
        assert len(js.content) > 1_000_000
        assert js.headers["content-type"].startswith(("application/javascript", "text/javascript"))
        assert "/docs" not in (await http.get("/openapi.json")).json()["paths"]
