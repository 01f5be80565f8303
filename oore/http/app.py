"""The app factory: one Quart-Trio app per daemon, built from explicit services."""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources.abc import Traversable
from typing import Any

from quart.routing import QuartRule
from quart_schema import HttpSecurityScheme, Info, QuartSchema
from quart_trio import QuartTrio

from oore.http.body import RoutedRequest, install_json_only
from oore.http.context import AppServices
from oore.http.cors import install_cors
from oore.http.errors import install_error_handlers
from oore.http.guard import install_guard
from oore.http.guesses import install_guess_limit
from oore.http.json_out import install_fast_json
from oore.http.metrics import METRICS, Metrics
from oore.http.openapi import Provider
from oore.http.requests import RequestLog
from oore.http.routes import (
    api_tokens,
    artifact_tokens,
    artifacts,
    audit_logs,
    auth,
    builds,
    events,
    health,
    integrations,
    ios_signing,
    notifications,
    oidc,
    pipelines,
    previews,
    projects,
    retention,
    runner_channel,
    runners,
    settings,
    setup,
    signing,
    users,
    variables,
    webhooks,
)
from oore.http.ui import UiBundle, install_ui, package_bundle

MAX_JSON_BODY = 2 * 1024 * 1024


class LazyBuilderRule(QuartRule):
    """A URL rule whose URL builder is compiled the first time a URL is built from it.

    Werkzeug generates and compiles Python source for two builders per rule when the rule
    is added, for ``url_for``; about 200 rules made that a third of a second of every
    app's construction, though oore never builds a URL from a rule (a daemon builds one
    app, the tests build hundreds). Matching requests is unaffected: it uses the rule's
    parts, compiled as before."""

    def _compile_builder(self, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
        compile_now = super()._compile_builder
        compiled: list[Callable[..., tuple[str, str]]] = []

        def build(rule: QuartRule, *args: Any, **kwargs: Any) -> tuple[str, str]:
            if not compiled:
                compiled.append(compile_now(append_unknown))
            return compiled[0](rule, *args, **kwargs)

        return build


def create_app(
    app_services: AppServices,
    *,
    access_log: bool = False,
    ui_dist: Traversable | None = None,
) -> QuartTrio:
    """Build the app; nothing global, so tests can build as many as they like.

    ``access_log``: one ``http.request`` log line per request (see oore/http/requests.py).
    ``ui_dist``: the built web UI to serve at ``/``, the package's unless given.
    """
    app = QuartTrio("oore")
    app.url_rule_class = LazyBuilderRule
    app.config["MAX_CONTENT_LENGTH"] = MAX_JSON_BODY
    app.request_class = RoutedRequest
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True
    app.extensions["oore"] = app_services
    QuartSchema(
        app,
        openapi_path="/v1/openapi.json",
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info=Info(title="oored", version=app_services.version),
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer", bearer_format="hex")},
        openapi_provider_class=Provider,
    )
    install_fast_json(app)
    metrics = Metrics(app_services)
    app.extensions[METRICS] = metrics
    metrics.install(app)
    install_guard(app)
    install_cors(app)
    install_guess_limit(app)
    install_json_only(app)
    install_ui(app, UiBundle(package_bundle() if ui_dist is None else ui_dist))
    install_error_handlers(app)
    app.register_blueprint(health.blueprint(metrics))
    app.register_blueprint(setup.blueprint)
    app.register_blueprint(auth.blueprint)
    app.register_blueprint(oidc.blueprint)
    app.register_blueprint(projects.blueprint)
    app.register_blueprint(pipelines.blueprint)
    app.register_blueprint(variables.blueprint)
    app.register_blueprint(ios_signing.blueprint)
    app.register_blueprint(signing.blueprint)
    app.register_blueprint(builds.blueprint)
    app.register_blueprint(previews.blueprint)
    app.register_blueprint(events.blueprint)
    app.register_blueprint(runners.blueprint)
    app.register_blueprint(runner_channel.blueprint)
    app.register_blueprint(settings.blueprint)
    app.register_blueprint(retention.blueprint)
    app.register_blueprint(notifications.blueprint)
    app.register_blueprint(artifact_tokens.blueprint)
    app.register_blueprint(users.blueprint)
    app.register_blueprint(api_tokens.blueprint)
    app.register_blueprint(audit_logs.blueprint)
    app.register_blueprint(integrations.blueprint)
    app.register_blueprint(webhooks.blueprint)
    artifacts.install(app, app_services)
    # Outermost, so a streamed upload is inside its request too.
    inner: Any = app.asgi_app
    app.asgi_app = RequestLog(inner, access_log=access_log)  # type: ignore[method-assign,assignment]
    return app
