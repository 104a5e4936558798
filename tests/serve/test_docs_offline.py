"""/docs and /redoc load Swagger UI and ReDoc from the package: no request leaves the machine."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from breastdx.serve import ServeSettings, create_app
from breastdx.serve.models import ModelRegistry


def test_docs_pages_reference_only_local_files():
    with TestClient(create_app(ServeSettings(auth=False, database_url="sqlite://"), registry=ModelRegistry({}))) as c:
        for path in ("/docs", "/redoc"):
            r = c.get(path)
            assert r.status_code == 200
            urls = re.findall(r"""(?:src|href)=["']([^"']+)""", r.text) + re.findall(r"url: ?'([^']+)'", r.text)
            assert urls and all(not u.startswith(("http:", "https:", "//")) for u in urls), (path, urls)
            assert "cdn.jsdelivr" not in r.text and "https://" not in r.headers["content-security-policy"]
            for u in urls:
                if u.startswith("/static-offline-docs/"):
                    asset = c.get(u)
                    assert asset.status_code == 200 and len(asset.content) > 1000, u
