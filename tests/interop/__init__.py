"""Other implementations verifying refreshd's JWKS and access tokens: PyJWT and Node's jose."""
