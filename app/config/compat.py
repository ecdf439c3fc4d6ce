"""Settings for clients written for Strapi core's own session mode (``jwtManagement: 'refresh'``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class StrapiSessionSettings(BaseSettings):
    """Mixed into ``app.settings.Settings``."""
