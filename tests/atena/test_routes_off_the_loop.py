"""Only the routes that call another node run on the event loop (DESIGN.md §8: no database
call runs there); every other route of atena — its JSON API, the staff routes, OAuth and
the staff UI — is a plain function, which FastAPI runs in a worker thread.

The suite's RENKEI_EVENT_LOOP_IO=error catches a database call on the loop in a route a
test happens to reach; this catches the shape for every route, reached or not.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from renkei.atena.app import create_app
from renkei.federation.topology import SHINJUKU
from renkei.web.atena import create_staff_app
from tests.api.fed import Federation

# Routes that call another node (their database work is in worker threads: flows.Work.unit),
# and the OAuth endpoints, which read a form body and then work in a thread.
ON_THE_LOOP = {
    ("atena", "POST", "/v1/residents"),  # numbering starts pseudonym acquisition (0320008)
    ("atena", "POST", "/v1/numbering"),
    ("atena", "POST", "/v1/non-residents/individual-number"),  # asks J-LIS
    ("atena", "POST", "/v1/pseudonyms/acquire"),
    ("atena", "POST", "/v1/register/changes"),
    ("atena", "POST", "/v1/pseudonyms/status"),
    ("atena", "POST", "/v1/fukuhon"),
    ("atena", "POST", "/v1/inquiries"),
    ("atena", "POST", "/v1/inquiries/batch"),  # streams the upload; parses it in a thread
    ("atena", "POST", "/oauth/token"),
    ("atena", "POST", "/oauth/introspect"),
    ("staff", "POST", "/atena/inquiry"),
    ("staff", "POST", "/atena/persons/{atena_no}/identity-search"),  # asks J-LIS
}
# Dependencies that run on the loop: each reads the request (body, form) and nothing else.
ASYNC_DEPENDENCIES = {
    "_static_scope.<locals>.scope", "_system_scope.<locals>.scope", "_fukuhon_scope", "form_fields",
}
# 庁内連携 (renkei.atena.chonai_api): the scope from the query or the JSON body.
ASYNC_DEPENDENCIES |= {"_body_scope.<locals>.scope", "_query_scope.<locals>.scope"}
# /v1/inquiries: the credentials from the headers, checked in the inquiry's first unit of
# work (a refusal found before the body's 422 is checked in the database thread, rt.run_db).
ASYNC_DEPENDENCIES |= {"inquirer.<locals>.dependency"}


def _routes(app: FastAPI) -> Iterator[APIRoute]:
    yield from _walk(app.routes)


def _walk(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # FastAPI keeps an included router as one entry (its routes resolved lazily).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _walk(included.routes)


def _coroutine_dependencies(dependant: Dependant) -> Iterator[Any]:
    for dep in dependant.dependencies:
        if dep.call is not None and inspect.iscoroutinefunction(dep.call):
            yield dep.call
        yield from _coroutine_dependencies(dep)


def test_only_routes_that_call_other_nodes_are_coroutines(fed: Federation) -> None:
    atena = create_app(fed.config(SHINJUKU, "atena"))
    staff = create_staff_app(atena, terminal_check=False)
    found: set[tuple[str, str, str]] = set()
    dependencies: set[str] = set()
    for name, app in (("atena", atena), ("staff", staff)):
        for route in _routes(app):
            if inspect.iscoroutinefunction(route.endpoint):
                found |= {(name, method, route.path) for method in route.methods}
            dependencies |= {call.__qualname__ for call in _coroutine_dependencies(route.dependant)}
    assert found == ON_THE_LOOP
    assert dependencies <= ASYNC_DEPENDENCIES, dependencies - ASYNC_DEPENDENCIES
    # The check sees routes of both apps (it would pass vacuously on an empty app).
    assert sum(1 for _ in _routes(atena)) > 20 and sum(1 for _ in _routes(staff)) > 10
