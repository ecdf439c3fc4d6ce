"""The domain. Plain values in, plain results out; no web framework here, and no commits: the caller owns the
transaction (one per request, committed before the response leaves)."""
