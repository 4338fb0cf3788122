"""An unexpected exception is a generic 500 problem; only its type is logged (never its
message, which may carry SQL parameters and so personal data)."""

from __future__ import annotations

import pytest
import structlog
from fastapi import FastAPI
from starlette.testclient import TestClient

from renkei.core.errors import install_problem_handlers

SECRET = "山田花子 123456789018"


def _app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(SECRET)

    @app.get("/fine")
    def fine() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def test_an_unexpected_error_is_a_500_problem_without_internals(capsys: pytest.CaptureFixture[str]) -> None:
    structlog.configure(processors=[structlog.processors.KeyValueRenderer()])
    try:
        with TestClient(_app(), raise_server_exceptions=False) as client:
            r = client.get("/boom")
            assert r.status_code == 500
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "internal_error" and SECRET not in r.text
            assert client.get("/fine").json() == {"ok": "yes"}
    finally:
        structlog.reset_defaults()
    out = capsys.readouterr()
    logged = out.out + out.err
    assert "RuntimeError" in logged and SECRET not in logged
