// An operator's OpenID Connect provider for authserver's upstream sign-in tests: panva's
// node-oidc-provider (certified, and not ours), with one confidential client and a few people.
//
//   PORT=3300 CLIENT_ID=... CLIENT_SECRET=... REDIRECT_URIS="http://127.0.0.1:5000/..." node server.mjs
//
// Environment:
//   PORT                  listen port on 127.0.0.1 (required)
//   ISSUER                issuer identifier (default http://127.0.0.1:PORT); a test may name a
//                         loopback proxy in front of this server instead
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URIS (space-separated): the one static client
//   AUTH_METHOD           its token_endpoint_auth_method (default client_secret_basic)
//   ID_TOKEN_TTL          seconds an ID token lives (default 600)
//   CLOCK_OFFSET_SECONDS  the provider's clock runs this far from the machine's (default 0):
//                         a provider whose clock is behind issues ID tokens already expired
//
// Interaction (what a person does at the provider), all over plain HTTP without JavaScript:
//   GET  /interaction/:uid        a sign-in form listing the people below (or, when the person is
//                                 already signed in here and only consent is missing, a 303 on)
//   POST /interaction/:uid/login  form field `login` (a key of ACCOUNTS): signs that person in,
//                                 grants the requested OpenID scopes, 303 back to the flow
//   POST /interaction/:uid/abort  the person refuses: the flow ends with error=access_denied

import * as crypto from 'node:crypto';

import Provider from 'oidc-provider';

const PORT = Number.parseInt(process.env.PORT || '', 10);
if (!PORT) throw new Error('PORT is required');
const ISSUER = process.env.ISSUER || `http://127.0.0.1:${PORT}`;
const OFFSET_MS = Number.parseFloat(process.env.CLOCK_OFFSET_SECONDS || '0') * 1000;
if (OFFSET_MS) {
  const realNow = Date.now;
  Date.now = () => realNow() + OFFSET_MS;
}

// People at this provider: the login name is what the form asks for; `sub` is what links them.
export const ACCOUNTS = {
  vera: { sub: 'u-1001-vera', email: 'vera@example.com', email_verified: true, name: 'Vera Verified' },
  una: { sub: 'u-1002-una', email: 'una@example.com', email_verified: false, name: 'Una Unverified' },
  nina: { sub: 'u-1003-nina', email: 'nina@example.com', email_verified: true, name: 'Nina New' },
  noemail: { sub: 'u-1004-noemail', name: 'No Email' },
};
const BY_SUB = new Map(Object.values(ACCOUNTS).map((a) => [a.sub, a]));

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const configuration = {
  jwks: { keys: [signingJwk] },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: (process.env.REDIRECT_URIS || '').split(/\s+/).filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: process.env.AUTH_METHOD || 'client_secret_basic',
  }],
  scopes: ['openid', 'email', 'profile'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  responseTypes: ['code'],
  pkce: { required: () => true },
  findAccount: async (ctx, sub) => {
    const account = BY_SUB.get(sub);
    if (!account) return undefined;
    return { accountId: sub, claims: async () => ({ ...account }) };
  },
  features: { devInteractions: { enabled: false } },
  ttl: {
    AccessToken: 600,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: Number.parseInt(process.env.ID_TOKEN_TTL || '600', 10),
    Interaction: 3600,
    Session: 3600,
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
};

const provider = new Provider(ISSUER, configuration);
provider.on('server_error', (ctx, err) => { console.error('server_error', err); });

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantRequested(details) {
  const { params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session?.accountId, clientId: params.client_id });
  const requested = String(params.scope || '').split(' ').filter((s) => configuration.scopes.includes(s));
  grant.addOIDCScope(requested.join(' '));
  return grant.save();
}

const escape = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(\/login|\/abort)?$/);
  if (!match) return next();
  const [, uid, action] = match;
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== uid) ctx.throw(400, 'interaction mismatch');

  if (ctx.method === 'GET' && !action) {
    if (details.prompt.name === 'consent') {
      const result = { consent: { grantId: await grantRequested(details) } };
      ctx.status = 303;
      return ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: true }));
    }
    ctx.type = 'html';
    ctx.body = `<!doctype html><title>Test provider sign-in</title>
<form method="post" action="/interaction/${escape(uid)}/login">
<select name="login">${Object.keys(ACCOUNTS).map((l) => `<option>${escape(l)}</option>`).join('')}</select>
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button type="submit">Cancel</button></form>`;
    return undefined;
  }
  if (ctx.method === 'POST' && action === '/login') {
    const account = ACCOUNTS[(await formBody(ctx.req)).get('login')];
    if (!account) ctx.throw(400, 'unknown login');
    details.session = { accountId: account.sub };
    const result = { login: { accountId: account.sub }, consent: { grantId: await grantRequested(details) } };
    ctx.status = 303;
    return ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  }
  if (ctx.method === 'POST' && action === '/abort') {
    const result = { error: 'access_denied', error_description: 'The person cancelled the sign-in.' };
    ctx.status = 303;
    return ctx.redirect(await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false }));
  }
  return ctx.throw(405);
});

const server = provider.listen(PORT, '127.0.0.1', () => {
  console.log(`test OpenID provider listening on 127.0.0.1:${PORT}, issuer ${ISSUER}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { server.close(); process.exit(0); });
}
