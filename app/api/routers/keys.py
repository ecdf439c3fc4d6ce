"""What other services use to trust refreshd's access tokens: its public keys, and token introspection."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.api import errors, transport
from app.api.deps import RuntimeDep
from app.api.docs import errors as documented_errors
from app.errors import NotFoundError, UnauthorizedError, ValidationError
from app.schemas.keys import ACCESS_TOKEN, INACTIVE, Introspection, JsonWebKeySet

router = APIRouter()
JWKS_PATH = "/.well-known/jwks.json"
FORM = "application/x-www-form-urlencoded"
# RFC 7662 asks for one form field; a body of thousands of fields is not an introspection request.
MAX_FORM_FIELDS = 8


@router.get(
    JWKS_PATH,
    tags=["keys"],
    response_model=JsonWebKeySet,
    responses={304: {"description": "Not modified: the `ETag` sent in `If-None-Match` is current"}},
    summary="The public keys that verify access tokens (JWK Set)",
)
async def jwks(request: Request, runtime: RuntimeDep) -> Response:
    """The public half of every key that signs or verifies access tokens (ES256 or RS256), the signing key
    first, each with its `kid`; never a private part. `{"keys": []}` with an HS algorithm, whose secret nobody
    else may hold. Cache it for `max-age` (`JWKS_MAX_AGE`); revalidate with `If-None-Match`. When a token names a
    `kid` you do not have, fetch again: a new key is published here before it signs anything."""
    published = runtime.transport.keys.published
    headers = {
        "Cache-Control": f"public, max-age={runtime.settings.jwks_max_age.total_seconds():.0f}",
        "ETag": published.etag,
        # Public keys, no credentials: any page may read them (a browser-side verifier, a JWT debugger).
        "Access-Control-Allow-Origin": "*",
    }
    presented = _etags(request.headers.get("if-none-match"))
    if published.etag in presented or "*" in presented:
        return Response(status_code=304, headers=headers)
    return Response(published.jwks, media_type="application/json", headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


@router.post(
    "/api/auth/introspect",
    tags=["keys"],
    response_model=Introspection,
    response_model_exclude_none=True,
    responses=documented_errors(400, 401, 404, 413, 500),
    summary="Is this access token active now? (RFC 7662, for resource servers)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                FORM: {
                    "schema": {
                        "type": "object",
                        "required": ["token"],
                        "properties": {
                            "token": {"type": "string", "description": "The access token"},
                            "token_type_hint": {
                                "type": "string",
                                "description": "Accepted and ignored (RFC 7662)",
                            },
                        },
                    }
                }
            },
        }
    },
)
async def introspect(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """For an API behind refreshd that must honour a logout before the access token expires. The caller
    authenticates with `Authorization: Bearer <INTROSPECTION_TOKEN>` (404 when that setting is unset).
    `{"active": true, ...}` for an access token `/api/users/me` would accept now: signed by this service, unexpired,
    its session live, its user neither blocked nor deleted. Exactly `{"active": false}` for anything else: expired,
    revoked (logout, block, password change, refresh-token reuse), a refresh token, garbage."""
    expected = runtime.settings.introspection_token
    if expected is None:
        raise NotFoundError()
    if not transport.bearer_matches(request, expected):
        realm = {"WWW-Authenticate": 'Bearer realm="introspection"'}
        return errors.render(UnauthorizedError(headers=realm))
    token = _form_token(request.headers.get("content-type"), await request.body())
    active = await runtime.services.sessions.introspect(
        token, now=runtime.clock(), email_confirmation=runtime.settings.email_confirmation
    )
    if active is None:
        return transport.private_json(INACTIVE)
    claims = active.claims
    return transport.private_json(
        Introspection(
            active=True,
            sub=str(claims.user_id),
            sid=claims.session_id,
            exp=claims.expires_at,
            iat=claims.issued_at,
            token_type=ACCESS_TOKEN,
            username=active.username,
        ).model_dump(exclude_none=True)
    )


def _form_token(content_type: str | None, body: bytes) -> str:
    if (content_type or "").split(";")[0].strip().lower() != FORM:
        raise ValidationError(f"The body must be {FORM} with a token field (RFC 7662)")
    try:
        fields = parse_qs(
            body.decode("utf-8"),
            strict_parsing=False,
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise ValidationError("Malformed form body") from None
    values = fields.get("token", [])
    if len(values) != 1 or not values[0]:
        raise ValidationError.from_field_errors([(["token"], "token is a required field")])
    return values[0]
