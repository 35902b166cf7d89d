"""The Ray Serve application: FastAPI routes under /api, the demo source under /demo, and the
Gradio UI at /. One replica (Gradio keeps per-process queue state)."""

from __future__ import annotations

from typing import Any

from ray import serve

from tg_actors.settings import Settings


# Serve's default of 5 requests in flight per replica would queue the 6th client (and every
# open /api/events stream holds one for as long as it is open)
@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress()
class TurboGiggleApp:
    def __init__(self, settings: dict[str, Any], token: str) -> None:
        from tg_actors import logs

        self._settings = Settings(**settings)
        self._token = token
        logs.install_run_fields()  # run-state fields on this replica's records too

    def __serve_build_asgi_app__(self) -> Any:
        return build_asgi_app(self._settings, self._token)


def build_asgi_app(settings: Settings, token: str) -> Any:
    """The whole ASGI app; also used without Ray Serve in tests (TestClient)."""
    import gradio as gr

    from demo.app import build_demo_app
    from serve.routes.api import build_api
    from serve.service import ApiService
    from ui.app import build_ui

    service = ApiService(settings.namespace, settings.api_cache_seconds)
    api = build_api(service, token, settings.max_body_bytes, settings.cors_origins)
    api.mount("/demo", build_demo_app())
    return gr.mount_gradio_app(api, build_ui(service.for_ui()), path="/")


def build_app(settings: Settings, token: str, head_resource: str | None = None) -> Any:
    """`head_resource`: a custom resource of the head node; the replica stays there, by the
    Database it mostly talks to, and a lost worker never takes the API and UI with it."""
    deployment: Any = TurboGiggleApp
    if head_resource is not None:
        options = {"num_cpus": 0, "resources": {head_resource: 0.001}}
        deployment = deployment.options(ray_actor_options=options)
    # the token goes apart from the settings (Settings.shareable leaves it out)
    return deployment.bind(settings.shareable(), token)
