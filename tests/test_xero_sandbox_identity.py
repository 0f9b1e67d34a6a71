"""The Xero sandbox's OAuth 2.0 service, connections and the accounting gate (401/403), over HTTP."""
from __future__ import annotations

import base64

import httpx
import pytest

from tests.xero_sandbox_support import CLIENT_ID, CLIENT_SECRET, start_sandbox, stop_sandbox


@pytest.fixture
def sb():
    sandbox = start_sandbox()
    yield sandbox
    stop_sandbox(sandbox)


def test_authorization_code_flow_with_pkce_grants_every_org(sb):
    query, verifier = sb.consent()
    assert set(query) >= {"code", "state", "scope"}

    response = sb.exchange(query["code"], verifier)
    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "Bearer" and token["expires_in"] == 1800
    assert token["scope"].split() == ["offline_access", "accounting.invoices", "accounting.settings"]
    assert token["access_token"].count(".") == 2 and token["refresh_token"]
    assert "id_token" not in token  # only with openid

    connections = sb.http.get("/connections", headers={"Authorization": "Bearer " + token["access_token"]}).json()
    assert {c["tenantName"] for c in connections} == {"Acme Pty Ltd", "Kiwi Ltd"}
    assert {c["tenantType"] for c in connections} == {"ORGANISATION"}
    assert len({c["authEventId"] for c in connections}) == 1
    assert connections[0]["createdDateUtc"].startswith("2026-11-24T09:00:00")

    organisation = sb.call("GET", "/Organisation", token, "Kiwi Ltd")
    assert organisation.status_code == 200
    assert organisation.json()["Organisations"][0]["Name"] == "Kiwi Ltd"


def test_code_is_single_use_and_lives_five_minutes(sb):
    query, verifier = sb.consent()
    assert sb.exchange(query["code"], verifier).status_code == 200
    reused = sb.exchange(query["code"], verifier)
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")

    query, verifier = sb.consent()
    sb.clock.advance(301)
    late = sb.exchange(query["code"], verifier)
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")


def test_pkce_verifier_must_match_the_challenge(sb):
    query, _ = sb.consent()
    assert sb.exchange(query["code"], "a-verifier-that-does-not-match-the-challenge").json()["error"] == "invalid_grant"
    query, _ = sb.consent()
    assert sb.exchange(query["code"], None).json()["error"] == "invalid_grant"


def test_pkce_only_app_needs_a_challenge_and_no_secret(sb):
    from sandbox.xero.identity import pkce_challenge

    sb.sandbox.register_app("desktop-app", None, [sb.callback.url])
    params = {"response_type": "code", "client_id": "desktop-app", "redirect_uri": sb.callback.url,
              "scope": "offline_access accounting.invoices", "state": "s2"}
    refused = sb.http.get("/identity/connect/authorize", params=params)
    assert httpx.URL(refused.headers["location"]).params["error"] == "invalid_request"

    verifier = "v" * 64
    granted = sb.http.get("/identity/connect/authorize", params={**params, "code_challenge": pkce_challenge(verifier),
                                                                 "code_challenge_method": "S256"})
    code = httpx.URL(granted.headers["location"]).params["code"]
    token = sb.http.post("/connect/token", data={"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": sb.callback.url, "client_id": "desktop-app",
                                                 "code_verifier": verifier})
    assert token.status_code == 200 and token.json()["refresh_token"]


def test_redirect_uri_at_exchange_must_match(sb):
    query, verifier = sb.consent()
    response = sb.exchange(query["code"], verifier, redirect_uri="http://127.0.0.1:1/elsewhere")
    assert response.json()["error"] == "invalid_grant"


def test_authorize_refuses_bad_requests(sb):
    base = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": sb.callback.url,
            "scope": "offline_access accounting.invoices", "state": "s1"}

    def authorize(**changes):
        return sb.http.get("/identity/connect/authorize", params={**base, **changes})

    assert authorize(client_id="nobody").status_code == 400
    unregistered = authorize(redirect_uri="http://127.0.0.1:1/steal")
    assert unregistered.status_code == 400 and "location" not in unregistered.headers

    for changes, error in [({"scope": "offline_access accounting.everything"}, "invalid_scope"),
                           ({"response_type": "token"}, "unsupported_response_type"),
                           ({"code_challenge": "abc", "code_challenge_method": "plain"}, "invalid_request")]:
        refused = authorize(**changes)
        assert refused.status_code == 302
        params = httpx.URL(refused.headers["location"]).params
        assert (params["error"], params["state"]) == (error, "s1") and "code" not in params


def test_consent_can_be_limited_to_some_orgs(sb):
    query, verifier = sb.consent(sandbox_orgs="Kiwi Ltd")
    token = sb.exchange(query["code"], verifier).json()
    connections = sb.http.get("/Connections", headers={"Authorization": "Bearer " + token["access_token"]}).json()
    assert [c["tenantName"] for c in connections] == ["Kiwi Ltd"]
    assert sb.call("GET", "/Organisation", token, "Acme Pty Ltd").status_code == 403
    assert sb.call("GET", "/Organisation", token, "Kiwi Ltd").status_code == 200


def test_sandbox_setting_picks_the_orgs_on_the_consent_page(sb):
    sb.sandbox.consent_orgs = ["Acme Pty Ltd"]
    query, verifier = sb.consent()
    token = sb.exchange(query["code"], verifier).json()
    connections = sb.http.get("/connections", headers={"Authorization": "Bearer " + token["access_token"]}).json()
    assert [c["tenantName"] for c in connections] == ["Acme Pty Ltd"]


def test_client_authenticates_by_basic_or_body_and_a_wrong_secret_is_refused(sb):
    refresh_token = sb.tokens()["refresh_token"]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    by_basic = sb.http.post("/connect/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token},
                            headers={"Authorization": "Basic " + basic})
    assert by_basic.status_code == 200

    wrong = sb.refresh(by_basic.json()["refresh_token"], client_secret="guess")
    assert (wrong.status_code, wrong.json()) == (400, {"error": "invalid_client"})
    assert CLIENT_SECRET not in wrong.text
    assert sb.http.post("/connect/token", data={"grant_type": "password", "client_id": CLIENT_ID,
                                                "client_secret": CLIENT_SECRET}).json()["error"] == "unsupported_grant_type"


def test_refresh_rotates_and_the_previous_token_has_a_30_minute_grace(sb):
    first = sb.tokens()
    second = sb.refresh(first["refresh_token"], scope=first["scope"]).json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert sb.call("GET", "/Organisation", second, "Acme Pty Ltd").status_code == 200

    # The response to a refresh can be lost: the old token still works for a while.
    sb.clock.advance(29 * 60)
    retried = sb.refresh(first["refresh_token"])
    assert retried.status_code == 200

    sb.clock.advance(2 * 60)
    expired = sb.refresh(first["refresh_token"])
    assert (expired.status_code, expired.json()) == (400, {"error": "invalid_grant"})
    assert sb.refresh(second["refresh_token"]).status_code == 200


def test_lost_refresh_response_is_recovered_by_retrying_the_old_token(sb):
    first = sb.tokens()
    sb.sandbox.faults.script("lost_response", method="POST", path_prefix="/connect/token")
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # closed: "disconnected" or "reset"
        sb.refresh(first["refresh_token"])
    retried = sb.refresh(first["refresh_token"])
    assert retried.status_code == 200
    assert sb.call("GET", "/Organisation", retried.json(), "Acme Pty Ltd").status_code == 200


def test_refresh_cannot_widen_scopes(sb):
    token = sb.tokens(scopes=["offline_access", "accounting.invoices"])
    wider = sb.refresh(token["refresh_token"], scope="offline_access accounting.invoices accounting.payments")
    assert wider.json()["error"] == "invalid_scope"


def test_unused_refresh_token_expires_after_60_days(sb):
    token = sb.tokens()
    sb.clock.advance(59 * 86_400)
    still_fine = sb.refresh(token["refresh_token"])
    assert still_fine.status_code == 200
    sb.clock.advance(61 * 86_400)
    assert sb.refresh(still_fine.json()["refresh_token"]).json() == {"error": "invalid_grant"}


def test_no_refresh_token_without_offline_access(sb):
    token = sb.tokens(scopes=["accounting.invoices"])
    assert "refresh_token" not in token
    assert "id_token" in sb.tokens(scopes=["openid", "profile", "email", "offline_access"])


def test_access_token_expires_after_30_minutes_with_xero_401_shape(sb):
    token = sb.tokens()
    assert sb.call("GET", "/Organisation", token, "Acme Pty Ltd").status_code == 200
    sb.clock.advance(1800)
    expired = sb.call("GET", "/Organisation", token, "Acme Pty Ltd")
    assert expired.status_code == 401
    body = expired.json()
    assert body["Type"] is None and body["Title"] == "Unauthorized" and body["Status"] == 401
    assert body["Detail"] == "TokenExpired: token expired at 11/24/2026 09:30:00"
    assert set(body) == {"Type", "Title", "Status", "Detail", "Instance", "Extensions"}

    for bad in ("not-a-token", None):
        refused = sb.call("GET", "/Organisation", bad, "Acme Pty Ltd")
        assert (refused.status_code, refused.json()["Detail"]) == (401, "AuthorizationUnsuccessful")
    assert sb.http.get("/connections", headers={"Authorization": "Bearer " + token["access_token"]}).status_code == 401


def test_tenant_header_must_name_a_connected_org(sb):
    token = sb.tokens(orgs=["Acme Pty Ltd"])
    for tenant in (None, "00000000-0000-0000-0000-000000000000", sb.org("Kiwi Ltd").tenant_id):
        headers = {} if tenant is None else {"xero-tenant-id": tenant}
        refused = sb.call("GET", "/Organisation", token, None, headers=headers)
        assert refused.status_code == 403
        body = refused.json()
        assert (body["Type"], body["Title"], body["Status"], body["Detail"]) == (
            None, "Forbidden", 403, "AuthenticationUnsuccessful")


def test_scopes_broad_or_granular_open_the_operation(sb):
    broad = sb.tokens(scopes=["accounting.transactions", "accounting.settings"])
    granular = sb.tokens(scopes=["accounting.invoices", "accounting.settings.read"])
    read_only = sb.tokens(scopes=["accounting.invoices.read", "accounting.settings.read"])
    contacts_only = sb.tokens(scopes=["accounting.contacts"])

    for token in (broad, granular, read_only):
        assert sb.call("GET", "/Invoices", token, "Acme Pty Ltd").status_code == 200
    refused = sb.call("GET", "/Invoices", contacts_only, "Acme Pty Ltd")
    assert (refused.status_code, refused.json()["Detail"]) == (403, "AuthorizationUnsuccessful")
    assert sb.call("GET", "/Contacts", contacts_only, "Acme Pty Ltd").status_code == 200
    assert sb.call("GET", "/Accounts", contacts_only, "Acme Pty Ltd").status_code == 403

    # Writing needs the full scope; the request is refused before anything is stored.
    write = sb.call("PUT", "/Invoices", read_only, "Acme Pty Ltd", json={"Invoices": []})
    assert write.status_code == 403
    assert sb.call("PUT", "/Invoices/x/Attachments/a.pdf", granular, "Acme Pty Ltd", content=b"%PDF").status_code == 403


def test_revocation_ends_the_grant_and_its_connections(sb):
    token = sb.tokens()
    other_user = sb.tokens()
    response = sb.http.post("/connect/revocation", data={"token": token["refresh_token"]},
                            auth=(CLIENT_ID, CLIENT_SECRET))
    assert response.status_code == 200
    assert sb.refresh(token["refresh_token"]).json() == {"error": "invalid_grant"}
    assert sb.call("GET", "/Organisation", token, "Acme Pty Ltd").status_code == 401
    # Another user's consent to the same app is untouched.
    assert sb.call("GET", "/Organisation", other_user, "Acme Pty Ltd").status_code == 200
    assert len(sb.http.get("/connections", headers={"Authorization": "Bearer " + other_user["access_token"]}).json()) == 2


def test_user_disconnecting_the_app_in_xero_ends_every_grant(sb):
    first, second = sb.tokens(), sb.tokens()
    sb.sandbox.disconnect_app(CLIENT_ID)
    for token in (first, second):
        assert sb.call("GET", "/Organisation", token, "Acme Pty Ltd").status_code == 401
        assert sb.refresh(token["refresh_token"]).json() == {"error": "invalid_grant"}
    assert sb.sandbox.identity.connections == {}


def test_connections_filter_by_auth_event_and_delete(sb):
    first, _ = sb.consent(sandbox_orgs="Acme Pty Ltd")
    token = sb.exchange(first["code"], _).json()
    second, verifier = sb.consent(sandbox_orgs="Kiwi Ltd")
    token = sb.exchange(second["code"], verifier).json()
    auth = {"Authorization": "Bearer " + token["access_token"]}

    connections = sb.http.get("/Connections", headers=auth).json()
    assert len(connections) == 2
    kiwi = next(c for c in connections if c["tenantName"] == "Kiwi Ltd")
    filtered = sb.http.get("/connections", params={"authEventId": kiwi["authEventId"]}, headers=auth).json()
    assert [c["tenantName"] for c in filtered] == ["Kiwi Ltd"]

    assert sb.http.delete(f"/connections/{kiwi['id']}", headers=auth).status_code == 204
    assert sb.http.delete(f"/CONNECTIONS/{kiwi['id']}", headers=auth).status_code == 404
    assert [c["tenantName"] for c in sb.http.get("/connections", headers=auth).json()] == ["Acme Pty Ltd"]
    assert sb.call("GET", "/Organisation", token, "Kiwi Ltd").status_code == 403
    assert sb.call("GET", "/Organisation", token, "Acme Pty Ltd").status_code == 200


def test_official_sdk_reads_connections_and_refreshes_against_the_sandbox(sb):
    """xero-python sends client credentials and the scope in the body on refresh; both must work."""
    from xero_python.api_client import ApiClient, Configuration
    from xero_python.api_client.oauth2 import OAuth2Token
    from xero_python.identity import IdentityApi

    class SandboxToken(OAuth2Token):
        def call_refresh_token_api(self, token_api):
            token_api.refresh_token_url = sb.base_url + "/connect/token"
            return token_api.refresh_token(self.refresh_token, self.scope)

    issued = sb.tokens()
    saved = [{**issued, "scope": issued["scope"].split()}]
    configuration = Configuration()
    configuration.oauth2_token = SandboxToken(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    api_client = ApiClient(configuration, pool_threads=1, oauth2_token_getter=lambda: saved[-1],
                           oauth2_token_saver=saved.append)

    connections = IdentityApi(api_client, base_url=sb.base_url).get_connections()
    assert sorted(c.tenant_name for c in connections) == ["Acme Pty Ltd", "Kiwi Ltd"]

    refreshed = api_client.refresh_oauth2_token()
    assert refreshed["refresh_token"] != issued["refresh_token"]
    assert len(saved) == 2 and refreshed["scope"] == issued["scope"].split()
    assert sb.call("GET", "/Organisation", refreshed["access_token"], "Acme Pty Ltd").status_code == 200
