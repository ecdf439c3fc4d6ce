"""Settings for clients written for Strapi core's own session mode (``jwtManagement: 'refresh'``).

Such a client asks per request for its refresh token in an HttpOnly cookie (``x-strapi-refresh-cookie: httpOnly``)
and names its device (``deviceId``). Neither is part of the refresh-token plugin's contract, so honouring them
changes nothing for the plugin's clients; where Strapi core and the plugin answer the same request differently
(core returns ``refreshToken`` from every login), ``REQUEST_REFRESH_ON_ALL`` chooses, off by default as the
plugin has it.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class StrapiSessionSettings(BaseSettings):
    """Mixed into ``app.settings.Settings``."""

    strapi_refresh_cookie_header: bool = Field(
        default=True,
        description="honour `x-strapi-refresh-cookie: httpOnly`: that request's refresh token goes in "
        "STRAPI_COOKIE_NAME",
    )
    strapi_cookie_name: str = Field(
        default="strapi_up_refresh",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="the cookie a Strapi session-mode client gets its refresh token in (Strapi's name)",
    )
    strapi_cookie_path: str = Field(
        default="/",
        pattern=r"^/[A-Za-z0-9._~/-]{0,255}$",
        description="that cookie's Path (Strapi's default is /, so its frontend's server can see it)",
    )
