"""Request checks that belong before any view."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse


class ChunkedBodyMiddleware:
    """A body sent chunked (``Transfer-Encoding: chunked``, no ``Content-Length``) is a 411.
    A WSGI server hands Django such a body with no length, and Django then reads it as empty:
    a chunked ``PUT /api/config/overrides/`` of ``{}`` was answered "the body is empty", a
    wrong account of what the client sent."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if chunked and not request.META.get("CONTENT_LENGTH"):
            return JsonResponse(
                {"detail": "send the body with a Content-Length: chunked bodies are not read"},
                status=411,
            )
        return self.get_response(request)
