"""Settings of the API documentation (``/docs``, ``/openapi.json``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class DocsSettings(BaseSettings):
    """Mixed into ``app.settings.Settings``."""

    docs_enabled: bool | None = Field(
        default=None,
        description="serve /docs (Swagger UI, from the service itself) and /openapi.json; "
        "unset: on, except in production",
    )

    @property
    def docs_served(self) -> bool:
        """Whether the documentation is served at all. Production keeps it off unless DOCS_ENABLED says so: an
        operator exposes no surface beyond the API itself without asking for it, as with /metrics; integrators
        take the document from a development instance or ``python -m app.api.openapi``."""
        if self.docs_enabled is not None:
            return self.docs_enabled
        return getattr(self, "environment", "development") != "production"
