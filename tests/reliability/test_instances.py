"""Several instances, one database: two gunicorn processes of authserver on one PostgreSQL and one
Redis must behave as one authorization server. Nothing about a flow may be tied to the instance
that started it (sessions, CSRF tokens, codes, refresh tokens, the answers kept for retries all live
in the signed cookie or the shared database), single use must hold across processes, and losing an
instance abruptly must not lose a token a client was given.

Needs PostgreSQL and Redis (AUTHSERVER_TEST_DATABASE_URL, AUTHSERVER_TEST_REDIS_URL); skipped
otherwise. See conftest.py here for how the instances are started.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlencode

import httpx2
from interop.people import Person, callback_params
from oauth.support import PKCE, authorize_params
from sqlalchemy import select

from authserver.extensions import db
from authserver.models import Token
from authserver.secrets import sha256_hex
from authserver.timeutil import utcnow

from .conftest import HUB, ISSUER, SCOPE, Instance, Instances

RACERS = 20
# An https redirect URI: the load threads start token families by remembered consent, which a
# public client only gets for a redirect URI its domain holds (loopback is asked every time).
REDIRECT_URI = "https://reliability.example/callback"


# --- helpers -------------------------------------------------------------------------------------
def show(response: httpx2.Response) -> str:
    return f"{response.request.method} {response.request.url} -> {response.status_code} {response.text[:300]}"


def register(instance: Instance) -> str:
    """RFC 7591 registration of a public client; returns its client_id."""
    response = httpx2.post(f"{instance.url}/oauth/register", timeout=15.0, json={
        "client_name": "Reliability Test Client", "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    })
    assert response.status_code == 201, show(response)
    return response.json()["client_id"]


def request_params(client_id: str, pkce: PKCE, resource: str) -> dict[str, str]:
    return authorize_params(client_id, pkce, resource=resource, scope=SCOPE, redirect_uri=REDIRECT_URI)


def code_form(client_id: str, code: str, pkce: PKCE, params: dict[str, str]) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"],
            "client_id": client_id, "code_verifier": pkce.verifier, "resource": params["resource"]}


def refresh_form(client_id: str, refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}


def introspect(http: httpx2.Client, instance: Instance, world, token: str) -> dict:
    response = http.post(f"{instance.url}/oauth/introspect", data={"token": token}, auth=world.introspection_auth)
    assert response.status_code == 200, show(response)
    return response.json()


def consent(world, instances: Instances, client_id: str, *, request_on: Instance, sign_in_on: Instance):
    """Alice's browser: the authorization request goes to `request_on`, sign-in and the consent
    page to `sign_in_on` (Person sends relative redirects there), the consent POST back to
    `request_on`. Returns (person, callback parameters, pkce, request parameters)."""
    pkce = PKCE()
    params = request_params(client_id, pkce, world.resource)
    person = Person(sign_in_on.url, world.email, world.password)
    try:
        # alice has one hub, so the consent page preselects it: no hub switch (which would reload
        # the page from `request_on`).
        callback = person.authorize(f"{request_on.url}/oauth/authorize?{urlencode(params)}")
        assert callback.get("state") == params["state"], (callback, instances.logs())
        assert callback.get("iss") == ISSUER, (callback, instances.logs())
        assert "code" in callback, (callback, instances.logs())
    except BaseException:
        person.close()
        raise
    return person, callback, pkce, params


def live_tokens(world) -> list[Token]:
    """Token rows still alive: neither rotated nor revoked (one per live token family)."""
    with world.app.app_context():
        try:
            return list(db.session.scalars(
                select(Token).where(Token.rotated_at.is_(None), Token.revoked_at.is_(None)).order_by(Token.id)
            ))
        finally:
            db.session.remove()


# --- a. one flow, two instances ------------------------------------------------------------------
def test_flow_started_on_one_instance_completes_on_the_other(world, instances: Instances):
    """Each step of a real flow lands on the other instance than the step before, as a
    round-robin load balancer would send it. This only works if the session cookie and its CSRF
    token, the authorization code, the refresh token and a retry's answer are shared state (the
    signed cookie under one secret key, or the database), and if both instances agree on the
    issuer."""
    a, b = instances.a, instances.b
    client_id = register(a)
    # Authorization request on B, sign-in and consent page on A, consent POST (with the CSRF token
    # A put in the session) on B.
    person, callback, pkce, params = consent(world, instances, client_id, request_on=b, sign_in_on=a)
    try:
        # B accepted A's CSRF token because the secret key is shared, not because CSRF is off.
        forged = person.http.post(f"{b.url}/oauth/authorize?{urlencode(params)}", data={
            "csrf_token": "not-the-token", "hub": HUB, "scope": SCOPE.split(), "decision": "allow"})
        assert forged.status_code == 400, f"a consent POST with a wrong CSRF token was not refused: {show(forged)}"
    finally:
        person.close()

    with httpx2.Client(timeout=15.0) as http:
        exchanged = http.post(f"{b.url}/oauth/token", data=code_form(client_id, callback["code"], pkce, params))
        assert exchanged.status_code == 200, (show(exchanged), instances.logs())
        first = exchanged.json()

        on_a = introspect(http, a, world, first["access_token"])
        assert on_a.get("active") is True, (on_a, instances.logs())
        assert (on_a["client_id"], on_a["iss"], on_a["aud"], on_a["hub_id"]) == (
            client_id, ISSUER, world.resource, int(HUB)), on_a

        refreshed = http.post(f"{a.url}/oauth/token", data=refresh_form(client_id, first["refresh_token"]))
        assert refreshed.status_code == 200, (show(refreshed), instances.logs())
        second = refreshed.json()
        assert second["refresh_token"] != first["refresh_token"], "the refresh token was not rotated"

        # A client that lost A's answer retries on B: inside the grace window it gets the same
        # answer again (kept on the rotated token's row in the database, not in A's memory).
        retried = http.post(f"{b.url}/oauth/token", data=refresh_form(client_id, first["refresh_token"]))
        assert retried.status_code == 200, (show(retried), instances.logs())
        assert (retried.json()["access_token"], retried.json()["refresh_token"]) == (
            second["access_token"], second["refresh_token"]), "B answered the retry with another token pair"

        assert introspect(http, b, world, first["access_token"]) == {"active": False}, \
            "the rotated-away access token still works on B"
        assert introspect(http, b, world, second["access_token"]).get("active") is True

        # Revocation on B is seen by A at once: nothing is cached per instance.
        revoked = http.post(f"{b.url}/oauth/revoke", data={
            "token": second["refresh_token"], "token_type_hint": "refresh_token", "client_id": client_id})
        assert revoked.status_code == 200, show(revoked)
        after = http.post(f"{a.url}/oauth/token", data=refresh_form(client_id, second["refresh_token"]))
        assert after.status_code == 400 and after.json().get("error") == "invalid_grant", show(after)
        assert introspect(http, a, world, second["access_token"]) == {"active": False}


# --- b. one refresh token, twenty racers, two instances ------------------------------------------
def test_concurrent_refreshes_across_instances_leave_one_token_family(world, instances: Instances):
    """tests/oauth/test_concurrency.py races 20 refreshes in one process; here they race across
    two processes (two connection pools), half through each instance. The expected behaviour is
    the app's (authserver/oauth/grants.py RefreshTokenGrant and store.consume_refresh_token): the
    conditional UPDATE lets exactly one request rotate the token; every other one, blocked on the
    row lock or arriving later, finds it rotated and, being an identical retry inside
    REPLAY_GRACE_SECONDS, gets the winner's answer from the rotated row. So: twenty 200s carrying
    one and the same new pair, and exactly one live token family."""
    a, b = instances.a, instances.b
    client_id = register(a)
    person, callback, pkce, params = consent(world, instances, client_id, request_on=a, sign_in_on=a)
    person.close()
    with httpx2.Client(timeout=15.0) as http:
        exchanged = http.post(f"{a.url}/oauth/token", data=code_form(client_id, callback["code"], pkce, params))
        assert exchanged.status_code == 200, (show(exchanged), instances.logs())
    original = exchanged.json()

    targets = [(a, b)[i % 2] for i in range(RACERS)]
    clients = [httpx2.Client(timeout=30.0) for _ in range(RACERS)]
    barrier = threading.Barrier(RACERS)
    results: list[tuple[str, int, dict] | BaseException | None] = [None] * RACERS

    def racer(i: int) -> None:
        try:
            clients[i].get(f"{targets[i].url}/healthz")  # open the connection before the start line
            barrier.wait(timeout=30)
            response = clients[i].post(f"{targets[i].url}/oauth/token",
                                       data=refresh_form(client_id, original["refresh_token"]))
            results[i] = (targets[i].name, response.status_code, response.json())
        except Exception as exc:  # reported below, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        for http_client in clients:
            http_client.close()

    crashed = [r for r in results if not isinstance(r, tuple)]
    assert not crashed, (crashed, instances.logs())
    statuses = Counter((name, status) for name, status, _ in results)
    assert statuses == Counter({("A", 200): RACERS // 2, ("B", 200): RACERS // 2}), (
        f"expected every racer to get 200 (one rotation, the rest replayed); got {dict(statuses)}: "
        f"{[body for _, status, body in results if status != 200]}\n{instances.logs()}")
    pairs = {(body["access_token"], body["refresh_token"]) for _, _, body in results}
    assert len(pairs) == 1, f"{len(pairs)} different token pairs were handed out for one refresh token"
    (new_access, new_refresh), = pairs
    assert new_refresh != original["refresh_token"]

    live = live_tokens(world)
    assert [(t.access_token_hash, t.refresh_token_hash) for t in live] == [
        (sha256_hex(new_access), sha256_hex(new_refresh))], (
        f"expected exactly one live token row, the one handed out; found {len(live)}")
    with world.app.app_context():
        try:
            rows = list(db.session.scalars(select(Token).order_by(Token.id)))
            assert len(rows) == 2, f"expected the original and one rotation, found {len(rows)} token rows"
            assert rows[1].parent_id == rows[0].id and rows[0].access_revoked_at is not None
        finally:
            db.session.remove()

    with httpx2.Client(timeout=15.0) as http:
        for instance in (a, b):
            assert introspect(http, instance, world, original["access_token"]) == {"active": False}, instance.name
            assert introspect(http, instance, world, new_access).get("active") is True, instance.name
        onward = http.post(f"{b.url}/oauth/token", data=refresh_form(client_id, new_refresh))
        assert onward.status_code == 200, (show(onward), instances.logs())


# --- c. SIGKILL an instance under load ------------------------------------------------------------
LOAD_THREADS = 12
WARM_UP_ON_A = 40  # answers from A before it is killed: the load is well under way
AFTER_KILL_ON_B = 100  # answers from B after the kill before the load stops
PHASE_TIMEOUT = 15.0


@dataclass
class Family:
    """A token family as its client knows it: the latest pair it received."""

    access: str
    refresh: str


@dataclass
class Load:
    """State shared by the load threads and the test."""

    a: Instance
    b: Instance
    client_id: str
    resource: str
    cookies: httpx2.Cookies
    stop: threading.Event = field(default_factory=threading.Event)
    a_warm: threading.Event = field(default_factory=threading.Event)
    b_done: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: Counter = field(default_factory=Counter)  # HTTP answers per instance
    answers_after_kill: int = 0
    errors_on_a: Counter = field(default_factory=Counter)  # transport errors by exception name
    retried: list[tuple[datetime, httpx2.Response]] = field(default_factory=list)  # (sent at, B's answer)
    received: set[str] = field(default_factory=set)  # every access token received in a 200
    families: list[Family] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def answered(self, instance: Instance) -> None:
        with self.lock:
            self.answers[instance.name] += 1
            if instance is self.a and self.answers["A"] >= WARM_UP_ON_A:
                self.a_warm.set()
            if instance is self.b and self.killed.is_set():
                self.answers_after_kill += 1
                if self.answers_after_kill >= AFTER_KILL_ON_B:
                    self.b_done.set()


class LoadClient:
    """One client thread: starts new token families (authorization request with remembered
    consent, then code exchange) and rotates the refresh tokens of its families, alternating
    between A and B request by request. When a request to A fails at the transport level, it
    does what a client behind a load balancer does: sends the identical request to B (for the
    token endpoint that is an identical retry, answered from the consumed row if A had already
    committed) and stops using A."""

    def __init__(self, index: int, load: Load):
        self.index = index
        self.load = load
        self.steps = 0
        self.a_down = False
        self.families: list[Family] = []

    def run(self) -> None:
        try:
            with httpx2.Client(timeout=15.0, cookies=self.load.cookies, follow_redirects=False) as http:
                self.http = http
                while not self.load.stop.is_set():
                    self.steps += 1
                    if not self.families or self.steps % 3 == 0:
                        self.new_family()
                    else:
                        self.rotate(self.families[self.steps % len(self.families)])
        except Exception as exc:  # a crash in a load thread fails the test, with its cause
            with self.load.lock:
                self.load.failures.append(f"client {self.index} crashed: {exc!r}")
        with self.load.lock:
            self.load.families.extend(self.families)

    def send(self, method: str, path: str, **kwargs) -> httpx2.Response:
        target = self.load.a if (self.index + self.steps) % 2 == 0 and not self.a_down else self.load.b
        try:
            response = self.http.request(method, target.url + path, **kwargs)
        except httpx2.TransportError as exc:
            if target is self.load.b:
                raise
            self.a_down = True
            with self.load.lock:
                self.load.errors_on_a[type(exc).__name__] += 1
            target, sent_at = self.load.b, utcnow()
            response = self.http.request(method, target.url + path, **kwargs)
            with self.load.lock:
                self.load.retried.append((sent_at, response))
        self.load.answered(target)
        return response

    def fail(self, what: str, response: httpx2.Response) -> None:
        with self.load.lock:
            self.load.failures.append(f"client {self.index} {what}: {show(response)}")

    def received(self, response: httpx2.Response) -> Family:
        body = response.json()
        with self.load.lock:
            self.load.received.add(body["access_token"])
        return Family(body["access_token"], body["refresh_token"])

    def new_family(self) -> None:
        pkce = PKCE()
        params = request_params(self.load.client_id, pkce, self.load.resource)
        response = self.send("GET", "/oauth/authorize", params=params)
        code = callback_params(response.headers.get("Location", "")).get("code")
        if response.status_code != 302 or not code:
            return self.fail("authorization request (remembered consent)", response)
        response = self.send("POST", "/oauth/token", data=code_form(self.load.client_id, code, pkce, params))
        if response.status_code != 200:
            return self.fail("code exchange", response)
        self.families.append(self.received(response))

    def rotate(self, family: Family) -> None:
        response = self.send("POST", "/oauth/token", data=refresh_form(self.load.client_id, family.refresh))
        if response.status_code != 200:
            self.families.remove(family)  # lost: its tokens are reported through failures
            return self.fail("refresh", response)
        latest = self.received(response)
        family.access, family.refresh = latest.access, latest.refresh


def committed_by_a(world, load: Load) -> int:
    """How many retries B answered with a token issued before the retry was sent, that is by A in
    its last moments, between its commit and its answer (the kept answer at work). Whether a run
    has any depends on where the kill lands; reported, not asserted."""
    sent_at = {r.json()["access_token"]: at for at, r in load.retried
               if r.status_code == 200 and "access_token" in r.json()}
    with world.app.app_context():
        try:
            issued = dict(db.session.execute(select(Token.access_token_hash, Token.issued_at).where(
                Token.access_token_hash.in_([sha256_hex(t) for t in sent_at]))).all())
        finally:
            db.session.remove()
    return sum(1 for token, at in sent_at.items() if issued.get(sha256_hex(token), at) < at)


def test_sigkill_mid_load_loses_no_issued_token(world, instances: Instances):
    """Kill -9 one instance (master and workers) while clients are exchanging codes and rotating
    refresh tokens through both. Requests in flight on A die with it, possibly after A committed
    and before it answered; the client retries them on B. Afterwards every token family a client
    holds must be alive on B with exactly the tokens the client last received: each latest
    access token introspects active, and the database holds one live row per family, the
    client's pair, with no live row no client received (a token issued into the void) and none
    missing (a token received and then lost).

    Earlier access tokens of a family are not expected to stay active: rotation ends the access
    token the rotated refresh token came with ("one live access token per family", grants.py),
    so "every received token is still active" holds for the latest pair of every family."""
    a, b = instances.a, instances.b
    client_id = register(b)
    # Consent once (on A); every later authorization request is answered at once with a code.
    person, _, _, _ = consent(world, instances, client_id, request_on=a, sign_in_on=a)
    load = Load(a, b, client_id, world.resource, httpx2.Cookies(person.http.cookies))
    person.close()

    clients = [LoadClient(i, load) for i in range(LOAD_THREADS)]
    threads = [threading.Thread(target=c.run, name=f"load-{c.index}") for c in clients]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        assert load.a_warm.wait(PHASE_TIMEOUT), (
            f"A answered only {load.answers['A']} requests in {PHASE_TIMEOUT}s; failures: {load.failures[:5]}\n"
            f"{instances.logs()}")
        killed_after = time.monotonic() - started
        a.kill()
        load.killed.set()
        finished = load.b_done.wait(PHASE_TIMEOUT)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(30)
    duration = time.monotonic() - started
    summary = (
        f"load: {duration:.1f}s, A killed after {killed_after:.1f}s; answers {dict(load.answers)} "
        f"({load.answers_after_kill} from B after the kill); transport errors talking to A "
        f"{dict(load.errors_on_a)}, all retried on B ({len(load.retried)}, {committed_by_a(world, load)} of them "
        f"answered with tokens A had committed before it died); {len(load.received)} tokens received; "
        f"{len(load.families)} families; {len(load.failures)} failures")
    print(summary, flush=True)

    assert not any(t.is_alive() for t in threads), f"load threads did not stop; {summary}"
    assert finished, f"B did not keep serving after A was killed; {summary}\n{instances.logs()}"
    assert not load.failures, f"{summary}\n" + "\n".join(load.failures[:20]) + f"\n{instances.logs()}"
    assert sum(load.errors_on_a.values()) >= 1, f"no client saw A go away: the kill missed the load; {summary}"
    assert a.proc.returncode == -9, f"A was not killed (exit status {a.proc.returncode}); {summary}"

    with httpx2.Client(timeout=15.0) as http, ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda f: introspect(http, b, world, f.access).get("active") is True, load.families))
    inactive = [f.access[:12] for f, ok in zip(load.families, verdicts) if not ok]
    assert not inactive, (
        f"{len(inactive)} of {len(load.families)} latest access tokens received are not active on B "
        f"(e.g. {inactive[:5]}); {summary}\n{instances.logs()}")

    held = {(sha256_hex(f.access), sha256_hex(f.refresh)) for f in load.families}
    live = {(t.access_token_hash, t.refresh_token_hash) for t in live_tokens(world)}
    assert live == held, (
        f"live token rows in the database differ from the families clients hold: {len(live - held)} live "
        f"but held by no client (issued, never received), {len(held - live)} held but not live (lost); "
        f"{summary}")
