"""The OAuth 2.1 protocol core: Authlib's server with our storage and policy plugged into its seams.

No templates, no session, no flash here: views call in, and commit.
"""
