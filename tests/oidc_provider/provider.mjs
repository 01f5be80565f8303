// A real OpenID Provider (panva/oidc-provider, OpenID certified) for oore's tests.
//
// Usage: node provider.mjs '<json>' where the JSON object holds
//   client_id, client_secret, redirect_uris: string[],
//   accounts: [{sub, email?, email_verified?, picture?}],
//   token_endpoint_auth_method?: "client_secret_basic" | "client_secret_post"
// It listens on 127.0.0.1 on a port of the kernel's choosing and prints one JSON line
// {"issuer": "http://127.0.0.1:<port>"} once it accepts requests.
//
// Sign-in needs no browser: the interaction route finishes login for the account named
// by the authorization request's login_hint and grants the requested scopes, so a client
// that follows redirects ends at the redirect URI with ?code=...&state=...

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const options = JSON.parse(process.argv[2] ?? '{}');
const accounts = new Map((options.accounts ?? []).map((account) => [account.sub, account]));
const INTERACTION_PREFIX = '/interaction/';

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
}

function configuration() {
  return {
    clients: [
      {
        client_id: options.client_id,
        client_secret: options.client_secret,
        redirect_uris: options.redirect_uris,
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: options.token_endpoint_auth_method ?? 'client_secret_basic',
      },
    ],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified', 'picture'],
    },
    // Put the scope's claims in the ID token too: that is where oore reads them.
    conformIdTokenClaims: false,
    cookies: { keys: [randomBytes(32).toString('hex')] },
    jwks: { keys: [signingKey()] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `${INTERACTION_PREFIX}${interaction.uid}` },
    async findAccount(ctx, sub) {
      const account = accounts.get(sub);
      if (!account) {
        return undefined;
      }
      return {
        accountId: sub,
        async claims() {
          const claims = { sub };
          for (const name of ['email', 'email_verified', 'picture']) {
            if (account[name] !== undefined) {
              claims[name] = account[name];
            }
          }
          return claims;
        },
      };
    },
  };
}

async function interact(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  if (prompt.name === 'login') {
    const accountId = params.login_hint;
    if (!accounts.has(accountId)) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: `no test account ${accountId}`,
      });
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) {
      grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    }
    if (prompt.details.missingOIDCClaims) {
      grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    }
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, {
      mergeWithLastSubmission: true,
    });
    return;
  }
  res.statusCode = 500;
  res.end(`unexpected prompt ${prompt.name}`);
}

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  const handle = provider.callback();
  server.on('request', (req, res) => {
    if (req.url.startsWith(INTERACTION_PREFIX)) {
      interact(provider, req, res).catch((error) => {
        res.statusCode = 500;
        res.end(String(error));
      });
      return;
    }
    handle(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
