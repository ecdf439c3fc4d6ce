"""Settings of the API documentation (``/docs``, ``/openapi.json``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings


class DocsSettings(BaseSettings):
    """Mixed into ``app.settings.Settings``."""
