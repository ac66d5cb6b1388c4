from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the web process is up and answering. Readiness checks come with the workers."""
    return JsonResponse({"status": "ok"})
