"""What production refuses to start with: weak or shared signing keys, and settings that would leak secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.config.secret_keys import SECRET_FIELDS, secret_problem

if TYPE_CHECKING:
    from app.settings import Settings


def production_problems(settings: Settings) -> list[str]:
    """Every reason ``settings`` are unfit for production, in the order a start reports them."""
    problems = [
        problem
        for field in SECRET_FIELDS
        if (problem := secret_problem(field.upper(), getattr(settings, field).get_secret_value()))
    ]
    if not problems and settings.jwt_secret == settings.refresh_jwt_secret:
        problems.append("JWT_SECRET and REFRESH_JWT_SECRET must be different keys")
    if settings.email_confirmation and not settings.smtp_host:
        problems.append("EMAIL_CONFIRMATION needs SMTP_HOST (mail would only go to the log)")
    if settings.smtp_host and not settings.reset_password_url:
        # The default, PUBLIC_URL/reset-password, is a page refreshd does not serve: every link would be a 404.
        problems.append(
            "SMTP_HOST sends password-reset links: set RESET_PASSWORD_URL to your frontend's reset page"
        )
    if (
        settings.cookie_response
        and settings.cookie_secure is None
        and not settings.cookie_is_secure
    ):
        # A refresh token in a cookie without Secure goes out over plain http to anyone on the path.
        problems.append(
            "COOKIE_RESPONSE needs a Secure cookie: set PRODUCTION_URL to the frontend's https URL or "
            "COOKIE_SECURE=true (COOKIE_SECURE=false only if plain http is really meant)"
        )
    for name, token in (
        ("METRICS_TOKEN", settings.metrics_token),
        ("INTROSPECTION_TOKEN", settings.introspection_token),
    ):
        if token is not None and (problem := secret_problem(name, token.get_secret_value())):
            problems.append(problem)
    return problems
