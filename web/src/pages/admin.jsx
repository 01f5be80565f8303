// People, API tokens, the audit log and instance settings. Each page is offered only to
// the roles that may use it (see NAV in main.jsx); the server checks again.

import { useState } from "preact/hooks";
import { del, get, patch, post, put, query } from "../api.js";
import { Action, ErrorNote, Field, Pager, ShownOnce, formatDate, useId, useLoad } from "../ui.jsx";

const ROLES = ["owner", "admin", "developer", "qa_viewer"];
const roleName = (r) => r.replace("_", " ");

export function PeoplePage({ user }) {
  const [q, setQ] = useState("");
  const [offset, setOffset] = useState(0);
  const users = useLoad(() => get(`/v1/users${query({ q, limit: 50, offset, sort: "email", direction: "asc" })}`), [q, offset]);
  const [invite, setInvite] = useState({ email: "", role: "developer" });
  const [error, setError] = useState(null);
  const ids = { q: useId(), email: useId(), role: useId() };
  const act = async (fn) => {
    setError(null);
    try {
      await fn();
      users.reload();
    } catch (err) {
      setError(err);
    }
  };
  const assignable = user.role === "owner" ? ["admin", "developer", "qa_viewer"] : ["developer", "qa_viewer"];
  return (
    <section>
      <h1>People</h1>
      <form
        class="panel grid"
        aria-label="Invite someone"
        onSubmit={(e) => {
          e.preventDefault();
          act(async () => {
            await post("/v1/users/invite", { email: invite.email.trim(), role: invite.role });
            setInvite({ ...invite, email: "" });
          });
        }}
      >
        <Field label="Email" id={ids.email} hint="they become active the first time they sign in">
          <input id={ids.email} type="email" value={invite.email} onInput={(e) => setInvite({ ...invite, email: e.currentTarget.value })} required />
        </Field>
        <Field label="Role" id={ids.role}>
          <select id={ids.role} value={invite.role} onChange={(e) => setInvite({ ...invite, role: e.currentTarget.value })}>
            {["admin", "developer", "qa_viewer"].map((r) => (
              <option key={r} value={r}>
                {roleName(r)}
              </option>
            ))}
          </select>
        </Field>
        <div>
          <button class="primary">Invite</button>
        </div>
      </form>
      <ErrorNote error={error || users.error} />
      <div class="filters">
        <Field label="Find people" id={ids.q}>
          <input id={ids.q} type="search" value={q} onInput={(e) => { setQ(e.currentTarget.value); setOffset(0); }} />
        </Field>
      </div>
      {users.data ? (
        <>
          <table>
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Role</th>
                <th scope="col">Status</th>
                <th scope="col">Since</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {users.data.users.map((u) => {
                const editable = u.role !== "owner" && u.id !== user.id && (user.role === "owner" || u.role !== "admin");
                return (
                  <tr key={u.id}>
                    <td>
                      {u.email}
                      {u.display_name && u.display_name !== u.email ? <div class="hint">{u.display_name}</div> : null}
                    </td>
                    <td>
                      {editable ? (
                        <select aria-label={`Role of ${u.email}`} value={u.role} onChange={(e) => { const role = e.currentTarget.value; act(() => patch(`/v1/users/${u.id}/role`, { role })); }}>
                          {ROLES.filter((r) => r === u.role || assignable.includes(r)).map((r) => (
                            <option key={r} value={r}>
                              {roleName(r)}
                            </option>
                          ))}
                        </select>
                      ) : (
                        roleName(u.role)
                      )}
                    </td>
                    <td>{u.status}</td>
                    <td>{formatDate(u.created_at)}</td>
                    <td>
                      {editable ? (
                        u.status === "disabled" ? (
                          <Action class="small" aria-label={`Enable ${u.email}`} run={() => act(() => post(`/v1/users/${u.id}/enable`))}>
                            Enable
                          </Action>
                        ) : (
                          <Action class="small danger" aria-label={`Disable ${u.email}`} confirm={`Disable ${u.email}? Their sessions and API tokens end.`} run={() => act(() => del(`/v1/users/${u.id}`))}>
                            Disable
                          </Action>
                        )
                      ) : null}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          <Pager offset={offset} limit={50} total={users.data.total} onChange={setOffset} />
        </>
      ) : null}
    </section>
  );
}

export function TokensPage({ user }) {
  const tokens = useLoad(() => get("/v1/api-tokens"), []);
  const [form, setForm] = useState({ name: "", role: user.role === "owner" ? "admin" : user.role, days: "90" });
  const [shown, setShown] = useState(null);
  const [error, setError] = useState(null);
  const ids = { name: useId(), role: useId(), days: useId() };
  const roles = ROLES.slice(ROLES.indexOf(user.role === "owner" ? "admin" : user.role));
  return (
    <section>
      <h1>API tokens</h1>
      <p class="hint">
        For scripts and the <code>oore</code> command: send it as <code>Authorization: Bearer &lt;token&gt;</code>. A token never has more rights than you.
      </p>
      {shown ? <ShownOnce title="Token created." value={shown} onDone={() => setShown(null)} /> : null}
      <form
        class="panel grid"
        aria-label="Create an API token"
        onSubmit={async (e) => {
          e.preventDefault();
          setError(null);
          try {
            const body = { name: form.name.trim(), role: form.role };
            if (form.days) body.expires_at = Math.floor(Date.now() / 1000) + Math.round(Number(form.days) * 86400);
            const answer = await post("/v1/api-tokens", body);
            setShown(answer.token);
            setForm({ ...form, name: "" });
            tokens.reload();
          } catch (err) {
            setError(err);
          }
        }}
      >
        <Field label="Name" id={ids.name}>
          <input id={ids.name} value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} required />
        </Field>
        <Field label="Role" id={ids.role}>
          <select id={ids.role} value={form.role} onChange={(e) => setForm({ ...form, role: e.currentTarget.value })}>
            {roles.map((r) => (
              <option key={r} value={r}>
                {roleName(r)}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Expires after (days)" id={ids.days} hint="empty: never">
          <input id={ids.days} type="number" min="1" value={form.days} onInput={(e) => setForm({ ...form, days: e.currentTarget.value })} />
        </Field>
        <div>
          <button class="primary">Create token</button>
        </div>
      </form>
      <ErrorNote error={error || tokens.error} />
      {tokens.data?.tokens?.length ? (
        <table>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">Role</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data.tokens.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>
                  <code>{t.prefix}…</code>
                </td>
                <td>{roleName(t.role)}</td>
                <td>{formatDate(t.created_at)}</td>
                <td>{t.expires_at ? formatDate(t.expires_at) : "never"}</td>
                <td>{t.last_used_at ? formatDate(t.last_used_at) : "never"}</td>
                <td>
                  <Action class="small danger" aria-label={`Revoke ${t.name}`} confirm={`Revoke token ${t.name}?`} run={async () => { await del(`/v1/api-tokens/${t.id}`); tokens.reload(); }}>
                    Revoke
                  </Action>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : tokens.data ? (
        <p class="empty">No tokens.</p>
      ) : null}
    </section>
  );
}

export function AuditPage() {
  const [filters, setFilters] = useState({ action: "", resource_type: "", from: "", to: "" });
  const [offset, setOffset] = useState(0);
  const toTs = (d, end) => (d ? Math.floor(new Date(`${d}T${end ? "23:59:59" : "00:00:00"}`).getTime() / 1000) : "");
  const entries = useLoad(
    () =>
      get(
        `/v1/audit-logs${query({
          action: filters.action.trim(),
          resource_type: filters.resource_type.trim(),
          from_ts: toTs(filters.from, false),
          to_ts: toTs(filters.to, true),
          limit: 50,
          offset,
        })}`,
      ),
    [filters, offset],
  );
  const ids = { action: useId(), type: useId(), from: useId(), to: useId() };
  // On every input, not on change: a controlled field re-rendered by a load that lands
  // while someone types would otherwise be reset to the last applied filter.
  const set = (key) => (e) => {
    const value = e.currentTarget.value;
    setFilters((current) => ({ ...current, [key]: value }));
    setOffset(0);
  };
  return (
    <section>
      <h1>Audit log</h1>
      <form class="filters" role="search" aria-label="Filter the audit log" onSubmit={(e) => e.preventDefault()}>
        <Field label="Action" id={ids.action}>
          <input id={ids.action} value={filters.action} onInput={set("action")} placeholder="e.g. runner_drained" />
        </Field>
        <Field label="Resource type" id={ids.type}>
          <input id={ids.type} value={filters.resource_type} onInput={set("resource_type")} placeholder="e.g. runner" />
        </Field>
        <Field label="From" id={ids.from}>
          <input id={ids.from} type="date" value={filters.from} onInput={set("from")} />
        </Field>
        <Field label="To" id={ids.to}>
          <input id={ids.to} type="date" value={filters.to} onInput={set("to")} />
        </Field>
      </form>
      <ErrorNote error={entries.error} />
      {entries.data ? (
        <>
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">Action</th>
                <th scope="col">Resource</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {entries.data.entries.map((e) => (
                <tr key={e.id}>
                  <td>{formatDate(e.created_at)}</td>
                  <td>{e.actor_email || "system"}</td>
                  <td>
                    <code>{e.action}</code>
                  </td>
                  <td>
                    {e.resource_type}
                    {e.resource_id ? <span class="hint"> {e.resource_id}</span> : null}
                  </td>
                  <td class="details">{e.details || ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <Pager offset={offset} limit={50} total={entries.data.total} onChange={setOffset} />
        </>
      ) : null}
    </section>
  );
}

export function SettingsPage({ user }) {
  return (
    <section>
      <h1>Settings</h1>
      <ArtifactStorage />
      <Network owner={user.role === "owner"} />
    </section>
  );
}

function ArtifactStorage() {
  const current = useLoad(() => get("/v1/settings/artifact-storage"), []);
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState("");
  const ids = { provider: useId(), dir: useId(), bucket: useId(), region: useId(), endpoint: useId(), key: useId(), secret: useId() };
  const s = current.data?.settings;
  const f = form || (s ? { provider: s.provider, local_base_dir: s.local_base_dir || "", s3_bucket: s.s3_bucket || "", s3_region: s.s3_region || "", s3_endpoint: s.s3_endpoint || "", access_key_id: "", secret_access_key: "" } : null);
  if (!f) return <ErrorNote error={current.error} />;
  const set = (key) => (e) => {
    setForm({ ...f, [key]: e.currentTarget.value });
    setSaved("");
  };
  const s3 = f.provider === "s3" || f.provider === "r2";
  return (
    <form
      class="panel"
      aria-label="Artifact storage"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          const body = { provider: f.provider };
          for (const key of ["local_base_dir", "s3_bucket", "s3_region", "s3_endpoint", "access_key_id", "secret_access_key"]) if (f[key].trim()) body[key] = f[key].trim();
          await put("/v1/settings/artifact-storage", body);
          setSaved("Saved.");
          setForm(null);
          current.reload();
        } catch (err) {
          setError(err);
        }
      }}
    >
      <h2>Artifact storage</h2>
      <p class="hint">Now: {s.provider} (from {s.source}).</p>
      <div class="grid">
        <Field label="Provider" id={ids.provider}>
          <select id={ids.provider} value={f.provider} onChange={set("provider")}>
            {["local", "s3", "r2", "disabled"].map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </Field>
        {f.provider === "local" ? (
          <Field label="Directory" id={ids.dir}>
            <input id={ids.dir} value={f.local_base_dir} onInput={set("local_base_dir")} />
          </Field>
        ) : null}
        {s3 ? (
          <>
            <Field label="Bucket" id={ids.bucket}>
              <input id={ids.bucket} value={f.s3_bucket} onInput={set("s3_bucket")} />
            </Field>
            <Field label="Region" id={ids.region}>
              <input id={ids.region} value={f.s3_region} onInput={set("s3_region")} />
            </Field>
            <Field label="Endpoint" id={ids.endpoint}>
              <input id={ids.endpoint} value={f.s3_endpoint} onInput={set("s3_endpoint")} />
            </Field>
            <Field label="Access key ID" id={ids.key} hint={s.has_access_key_id ? "stored; empty keeps it" : undefined}>
              <input id={ids.key} value={f.access_key_id} onInput={set("access_key_id")} autoComplete="off" />
            </Field>
            <Field label="Secret access key" id={ids.secret} hint={s.has_secret_access_key ? "stored; empty keeps it" : undefined}>
              <input id={ids.secret} type="password" value={f.secret_access_key} onInput={set("secret_access_key")} autoComplete="off" />
            </Field>
          </>
        ) : null}
      </div>
      <button class="primary">Save storage</button> <span role="status">{saved}</span>
      <ErrorNote error={error} />
    </form>
  );
}

function Network({ owner }) {
  const current = useLoad(() => get("/v1/settings/external-access/network"), []);
  const preflight = useLoad(() => get("/v1/settings/external-access/preflight").catch(() => null), []);
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState("");
  const ids = { pub: useId(), delivery: useId(), origins: useId() };
  const s = current.data?.settings;
  const f = form || (s ? { public_url: s.public_url || "", artifact_delivery_url: s.artifact_delivery_url || "", allowed_origins: (s.allowed_origins || []).join("\n") } : null);
  if (!f) return <ErrorNote error={current.error} />;
  const set = (key) => (e) => {
    setForm({ ...f, [key]: e.currentTarget.value });
    setSaved("");
  };
  return (
    <form
      class="panel"
      aria-label="Network and external access"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          const body = { allowed_origins: f.allowed_origins.split(/\s+/).filter(Boolean) };
          if (f.public_url.trim()) body.public_url = f.public_url.trim();
          if (f.artifact_delivery_url.trim()) body.artifact_delivery_url = f.artifact_delivery_url.trim();
          await put("/v1/settings/external-access/network", body);
          setSaved("Saved.");
          setForm(null);
          current.reload();
          preflight.reload();
        } catch (err) {
          setError(err);
        }
      }}
    >
      <h2>Network and external access</h2>
      {!owner ? <p class="hint">Only the owner can change these.</p> : null}
      <fieldset disabled={!owner}>
        <div class="grid">
          <Field label="Public URL" id={ids.pub} hint="https address people and runners use">
            <input id={ids.pub} value={f.public_url} onInput={set("public_url")} placeholder="https://ci.example.com" />
          </Field>
          <Field label="Artifact delivery URL" id={ids.delivery}>
            <input id={ids.delivery} value={f.artifact_delivery_url} onInput={set("artifact_delivery_url")} />
          </Field>
          <Field label="Allowed origins (one a line)" id={ids.origins}>
            <textarea id={ids.origins} rows={4} value={f.allowed_origins} onInput={set("allowed_origins")} />
          </Field>
        </div>
        <button class="primary">Save network settings</button> <span role="status">{saved}</span>
      </fieldset>
      <ErrorNote error={error} />
      {preflight.data ? (
        <>
          <h3>Ready for remote access?</h3>
          <ul class="checks">
            {preflight.data.checks.map((c) => (
              <li key={c.id}>
                <span aria-hidden="true">{c.ok ? "✓" : "✗"}</span> <strong>{c.ok ? "OK" : "Not yet"}:</strong> {c.label}
                {c.ok ? "" : ` — ${c.message}`}
              </li>
            ))}
          </ul>
        </>
      ) : null}
    </form>
  );
}
