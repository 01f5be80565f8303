// Signing in (local, OIDC, trusted proxy) and first-run setup in remote mode. Sign-in
// calls carry X-Oore-Session: cookie: the daemon answers with an HttpOnly cookie and no
// token in the body. The setup session (30 minutes, setup endpoints only) is kept in this
// tab's sessionStorage so that it survives the identity provider's redirect.

import { useEffect, useState } from "preact/hooks";
import { get, post } from "../api.js";
import { ErrorNote, Field, navigate, useId, useLoad } from "../ui.jsx";

const SETUP_KEY = "oore.setup-session";

function callbackUrl() {
  return `${window.location.origin}/auth/callback`;
}

function Card({ title, children }) {
  return (
    <main id="main" class="signin">
      <div class="card">
        <p class="brand big">oore</p>
        <h1>{title}</h1>
        {children}
      </div>
    </main>
  );
}

export function SignIn({ onSignedIn }) {
  const status = useLoad(() => get("/v1/public/setup-status", { quiet: true }), []);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [askEmail, setAskEmail] = useState(false);
  const [wantRemote, setWantRemote] = useState(false);
  const [email, setEmail] = useState("");
  const emailId = useId();

  const run = async (fn) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
    } catch (err) {
      if (err.code === "email_required") setAskEmail(true);
      else setError(err);
    } finally {
      setBusy(false);
    }
  };

  if (status.error) {
    return (
      <Card title="Sign in">
        <ErrorNote error={status.error} />
        <button type="button" onClick={status.reload}>
          Try again
        </button>
      </Card>
    );
  }
  if (!status.data) return <p class="loading">Loading…</p>;
  const s = status.data;

  const remoteSetup = s.state !== "ready" && (s.runtime_mode === "remote" || wantRemote || sessionStorage.getItem(SETUP_KEY));
  if (remoteSetup) {
    return <RemoteSetup status={s} reload={status.reload} onSignedIn={onSignedIn} />;
  }

  const local = () =>
    run(async () => {
      const body = askEmail && email.trim() ? { email: email.trim() } : {};
      await post("/v1/auth/local/login", body, { cookie: true, quiet: true });
      await onSignedIn();
    });
  const oidc = () =>
    run(async () => {
      const url = `/v1/auth/oidc/start?redirect_uri=${encodeURIComponent(callbackUrl())}`;
      const { authorization_url: target } = await get(url, { quiet: true });
      sessionStorage.setItem("oore.after-signin", window.location.pathname + window.location.search);
      window.location.assign(target);
    });
  const proxy = () =>
    run(async () => {
      await post("/v1/auth/trusted-proxy/login", {}, { cookie: true, quiet: true });
      await onSignedIn();
    });

  return (
    <Card title={s.state === "ready" ? "Sign in" : "Set up oore"}>
      {s.runtime_mode === "local" ? (
        <>
          <p>
            {s.state === "ready"
              ? "This server runs in local mode: whoever uses this machine signs in as its owner."
              : "This server is new. Signing in on this machine finishes its setup and makes you its owner."}
          </p>
          <form
            onSubmit={(e) => {
              e.preventDefault();
              local();
            }}
          >
            {askEmail ? (
              <Field label="Several people use this server: your email" id={emailId}>
                <input id={emailId} type="email" value={email} onInput={(e) => setEmail(e.currentTarget.value)} required autoFocus />
              </Field>
            ) : null}
            <button class="primary" disabled={busy}>
              {s.state === "ready" ? "Sign in on this machine" : "Set up and sign in"}
            </button>
          </form>
          {s.state !== "ready" ? (
            <p>
              Or{" "}
              <button type="button" class="link" onClick={() => setWantRemote(true)}>
                set up this server for people on other machines
              </button>{" "}
              (single sign-on or a trusted proxy; needs a bootstrap token).
            </p>
          ) : null}
        </>
      ) : s.remote_auth_mode === "trusted_proxy" ? (
        <>
          <p>Your identity comes from the proxy in front of this server.</p>
          <button type="button" class="primary" disabled={busy} onClick={proxy}>
            Continue as the signed-in proxy user
          </button>
        </>
      ) : (
        <>
          <p>Sign in with your organisation's identity provider.</p>
          <button type="button" class="primary" disabled={busy} onClick={oidc}>
            Sign in with single sign-on
          </button>
        </>
      )}
      <ErrorNote error={error} />
    </Card>
  );
}

export function OidcCallback({ onSignedIn }) {
  const [error, setError] = useState(null);
  const [message, setMessage] = useState("Signing you in…");
  useEffect(() => {
    const params = new URLSearchParams(window.location.search);
    const code = params.get("code");
    const state = params.get("state");
    // The code and state must not stay in the address bar or in history.
    history.replaceState(null, "", "/auth/callback");
    if (!code || !state) {
      setError(new Error(params.get("error_description") || params.get("error") || "The sign-in was not completed"));
      return;
    }
    const setupToken = sessionStorage.getItem(SETUP_KEY);
    (async () => {
      try {
        if (setupToken && sessionStorage.getItem("oore.setup-oidc") === "1") {
          sessionStorage.removeItem("oore.setup-oidc");
          await post("/v1/setup/owner/verify-oidc", { code, state }, { quiet: true });
          setMessage("Owner verified.");
          navigate("/", { replace: true });
          return;
        }
        await post("/v1/auth/oidc/callback", { code, state }, { cookie: true, quiet: true });
        const back = sessionStorage.getItem("oore.after-signin") || "/";
        sessionStorage.removeItem("oore.after-signin");
        await onSignedIn();
        navigate(back, { replace: true });
      } catch (err) {
        setError(err);
      }
    })();
  }, []);
  return (
    <Card title="Signing in">
      {error ? (
        <>
          <ErrorNote error={error} />
          <button type="button" onClick={() => navigate("/", { replace: true })}>
            Back to sign in
          </button>
        </>
      ) : (
        <p role="status">{message}</p>
      )}
    </Card>
  );
}

/** Remote mode before setup is complete: bootstrap token, auth method, owner, complete. */
function RemoteSetup({ status, reload }) {
  const [token, setToken] = useState(() => sessionStorage.getItem(SETUP_KEY) || "");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const ids = { boot: useId(), issuer: useId(), client: useId(), secret: useId(), header: useId(), cidrs: useId(), shared: useId(), email: useId() };
  const [form, setForm] = useState({ bootstrap: "", issuer: "", client: "", secret: "", header: "x-oore-user-email", cidrs: "", shared: "", email: "" });
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value });
  const bearer = { bearer: token, quiet: true };

  const run = async (fn) => {
    setBusy(true);
    setError(null);
    try {
      await fn();
      reload();
    } catch (err) {
      if (err.status === 401) {
        sessionStorage.removeItem(SETUP_KEY);
        setToken("");
      }
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  const steps = ["Bootstrap token", "Sign-in method", "Owner", "Finish"];
  let step = 0;
  if (token) step = status.state === "owner_created" ? 3 : status.state === "idp_configured" ? 2 : 1;
  const choose = (mode) => run(() => post("/v1/setup/preferences", { runtime_mode: "remote", remote_auth_mode: mode }, bearer));

  let body;
  if (!token) {
    body = (
      <form
        onSubmit={(e) => {
          e.preventDefault();
          run(async () => {
            const answer = await post("/v1/setup/bootstrap-token/verify", { token: form.bootstrap.trim() }, { quiet: true });
            sessionStorage.setItem(SETUP_KEY, answer.session_token);
            setToken(answer.session_token);
          });
        }}
      >
        <p>
          Run <code>oore setup bootstrap-token</code> on the server and paste the bootstrap token it prints.
        </p>
        <Field label="Bootstrap token" id={ids.boot}>
          <input id={ids.boot} value={form.bootstrap} onInput={set("bootstrap")} autoComplete="off" required />
        </Field>
        <button class="primary" disabled={busy}>
          Continue
        </button>
      </form>
    );
  } else if (step === 1 && status.runtime_mode !== "remote") {
    body = (
      <>
        <p>How do people sign in?</p>
        <div class="row">
          <button type="button" class="primary" disabled={busy} onClick={() => choose("oidc")}>
            With an OIDC identity provider
          </button>
          <button type="button" disabled={busy} onClick={() => choose("trusted_proxy")}>
            Through a trusted proxy
          </button>
        </div>
      </>
    );
  } else if (step === 1 && status.remote_auth_mode !== "trusted_proxy") {
    body = (
      <form
        onSubmit={(e) => {
          e.preventDefault();
          run(() =>
            post(
              "/v1/setup/oidc/configure",
              { issuer_url: form.issuer.trim(), client_id: form.client.trim(), ...(form.secret ? { client_secret: form.secret } : {}) },
              bearer,
            ),
          );
        }}
      >
        <p>
          People sign in with OIDC. <button type="button" class="link" onClick={() => choose("trusted_proxy")}>Use a trusted proxy instead</button>
        </p>
        <Field label="Issuer URL" id={ids.issuer}>
          <input id={ids.issuer} type="url" value={form.issuer} onInput={set("issuer")} required />
        </Field>
        <Field label="Client ID" id={ids.client}>
          <input id={ids.client} value={form.client} onInput={set("client")} required />
        </Field>
        <Field label="Client secret (optional)" id={ids.secret}>
          <input id={ids.secret} type="password" value={form.secret} onInput={set("secret")} autoComplete="off" />
        </Field>
        <button class="primary" disabled={busy}>
          Save and continue
        </button>
      </form>
    );
  } else if (step === 1) {
    body = (
      <form
        onSubmit={(e) => {
          e.preventDefault();
          run(() =>
            post(
              "/v1/setup/trusted-proxy/configure",
              {
                user_email_header: form.header.trim(),
                trusted_proxy_cidrs: form.cidrs.split(/[\s,]+/).filter(Boolean),
                shared_secret: form.shared,
                ...(form.email.trim() ? { setup_owner_email: form.email.trim() } : {}),
              },
              bearer,
            ),
          );
        }}
      >
        <p>
          A proxy in front of oore tells it who is signed in.{" "}
          <button type="button" class="link" onClick={() => choose("oidc")}>Use OIDC instead</button>
        </p>
        <Field label="Identity header" id={ids.header}>
          <input id={ids.header} value={form.header} onInput={set("header")} />
        </Field>
        <Field label="Proxy addresses (CIDR, comma separated)" id={ids.cidrs}>
          <input id={ids.cidrs} value={form.cidrs} onInput={set("cidrs")} placeholder="10.0.0.0/8" />
        </Field>
        <Field label="Shared secret" id={ids.shared}>
          <input id={ids.shared} type="password" value={form.shared} onInput={set("shared")} required autoComplete="off" />
        </Field>
        <Field label="Owner email (optional)" id={ids.email}>
          <input id={ids.email} type="email" value={form.email} onInput={set("email")} />
        </Field>
        <button class="primary" disabled={busy}>
          Save and continue
        </button>
      </form>
    );
  } else if (step === 2) {
    body =
      status.remote_auth_mode === "trusted_proxy" ? (
        <>
          <p>Claim the owner account as the user the proxy signs in.</p>
          <button type="button" class="primary" disabled={busy} onClick={() => run(() => post("/v1/setup/owner/claim-trusted-proxy", {}, bearer))}>
            Become the owner
          </button>
        </>
      ) : (
        <>
          <p>Sign in with the identity provider once: that account becomes the owner.</p>
          <button
            type="button"
            class="primary"
            disabled={busy}
            onClick={() =>
              run(async () => {
                const answer = await post("/v1/setup/owner/start-oidc", { redirect_uri: callbackUrl() }, bearer);
                sessionStorage.setItem("oore.setup-oidc", "1");
                window.location.assign(answer.authorization_url);
              })
            }
          >
            Sign in as the owner
          </button>
        </>
      );
  } else {
    body = (
      <>
        <p>The owner is set. Finish setup to open oore to its users.</p>
        <button
          type="button"
          class="primary"
          disabled={busy}
          onClick={() =>
            run(async () => {
              await post("/v1/setup/complete", {}, bearer);
              sessionStorage.removeItem(SETUP_KEY);
              setToken("");
            })
          }
        >
          Finish setup
        </button>
      </>
    );
  }

  return (
    <Card title="Set up oore">
      <ol class="steps-indicator">
        {steps.map((name, i) => (
          <li key={name} aria-current={i === step ? "step" : undefined} class={i < step ? "done" : ""}>
            {i < step ? "✓ " : ""}
            {name}
          </li>
        ))}
      </ol>
      {body}
      <ErrorNote error={error} />
    </Card>
  );
}
