"""Authentication: API token, OAuth refresh token, or a bare access token.

Modules in layers, each importing only the ones above it in this list:

1. ``company``: which company an authorization belongs to (its ``api_domain``).
2. ``tokens``: the token set, the token store interface and the token endpoint.
3. ``store``: the token store file that carries tokens from one run to the next.
4. ``authenticator``: the SDK authenticator that refreshes OAuth tokens.
5. ``modes``: which of the three modes the config asks for, and its authenticator.
6. ``login``: the browser and no-browser login flows and the callback server.
7. ``cli``: the command's OAuth flags, and whether a run starts with a login.

tests/test_auth_layers.py holds the package to this order.
"""
