"""What ``app.settings`` builds on: signing-key checks and the development secrets file, URL and cookie-domain
normalisation, and the production start checks. Import ``Settings`` and these names from ``app.settings``."""
