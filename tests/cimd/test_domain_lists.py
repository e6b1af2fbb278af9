"""Issue 11 item 10 (d): the operator's document-domain lists match however the host is spelled.

`client.test.` (a fully qualified name with its root dot) is the same DNS name as `client.test`,
so a deny list entry must catch it, in either spelling, before anything is fetched. Defence
(oauth.cimd._domain_problem): hosts and list entries are compared without trailing dots."""

from __future__ import annotations

import pytest
from oauth.support import PKCE, assert_error_page, authorize_params

from .conftest import HOSTS, cimd_settings

PATH = "/oauth/app/client.json"
SPELLINGS = ["client.test.", "CLIENT.TEST.", "client.test..", "api.client.test."]
ALIASES = {host: "127.0.0.1" for host in SPELLINGS}


def _app(make_app, origin, **lists):
    return make_app(**cimd_settings(origin, CIMD_HOST_OVERRIDES={**HOSTS, **ALIASES},
                                    CIMD_ALLOWED_PRIVATE_HOSTS=[*HOSTS, *(h.lower() for h in SPELLINGS)], **lists))


def _authorize(app, world, client_id):
    from oauth.conftest import FlowDriver

    driver = FlowDriver(app.test_client(), world)
    driver.login()
    return driver.consent_page(authorize_params(client_id, PKCE(), redirect_uri="https://client.test/callback"))


@pytest.mark.parametrize("denied", ["client.test", "client.test."])
@pytest.mark.parametrize("host", ["client.test", *SPELLINGS])
def test_denied_domain_with_a_trailing_dot_is_denied(make_app, origin, world, host, denied):
    app = _app(make_app, origin, CIMD_DENIED_DOMAINS=[denied])
    response = _authorize(app, world, origin.url(PATH, host=host))
    assert_error_page(response)
    # An empty label (client.test..) is no DNS name at all: refused as such, also before fetching.
    reason = "not a valid DNS name" if ".." in host else "not accepted by this server"
    assert reason in response.get_data(as_text=True)
    assert sum(origin.hits.values()) == 0


@pytest.mark.parametrize("host", ["client.test", "api.client.test"])
def test_an_allow_list_entry_with_a_trailing_dot_still_allows_its_domain(make_app, origin, world, host):
    app = _app(make_app, origin, CIMD_ALLOWED_DOMAINS=["client.test."])
    response = _authorize(app, world, origin.url(PATH, host=host))
    assert "list of accepted client domains" not in response.get_data(as_text=True)
