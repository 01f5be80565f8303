// Runners: status, labels, current build, last seen; drain, undrain, delete; enrollment
// tokens (created, shown once, revoked).

import { useState } from "preact/hooks";
import { del, get, post, query } from "../api.js";
import { useEvents } from "../events.js";
import { Action, Ago, ErrorNote, Field, Link, ShownOnce, Status, buildName, can, formatDate, useId, useLoad } from "../ui.jsx";

export function RunnersPage({ user }) {
  const manage = can(user, "manageRunners");
  const runners = useLoad(() => get("/v1/runners?limit=100&sort=name&direction=asc"), []);
  const busy = useLoad(() => get(`/v1/builds${query({ status: "assigned,running", limit: 200 })}`), []);
  useEvents((type, data) => {
    if (type === "reconnected") {
      runners.reload();
      busy.reload();
    } else if (type === "runner" && data?.runner) {
      runners.setData((d) => {
        if (!d) return d;
        if (data.deleted) return { ...d, runners: d.runners.filter((r) => r.id !== data.runner.id) };
        const known = d.runners.some((r) => r.id === data.runner.id);
        return {
          ...d,
          runners: known ? d.runners.map((r) => (r.id === data.runner.id ? data.runner : r)) : [...d.runners, data.runner],
        };
      });
    } else if (type === "build") {
      busy.reload();
    }
  });
  const replace = (runner) =>
    runners.setData((d) => ({ ...d, runners: d.runners.map((r) => (r.id === runner.id ? runner : r)) }));
  const current = new Map((busy.data?.builds || []).filter((b) => b.runner_id).map((b) => [b.runner_id, b]));

  return (
    <section>
      <h1>Runners</h1>
      <ErrorNote error={runners.error} />
      {runners.data ? (
        runners.data.runners.length ? (
          <table class="runners">
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Status</th>
                <th scope="col">Labels</th>
                <th scope="col">Current build</th>
                <th scope="col">Last seen</th>
                {manage ? (
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                ) : null}
              </tr>
            </thead>
            <tbody>
              {runners.data.runners.map((r) => {
                const build = current.get(r.id);
                return (
                  <tr key={r.id} data-runner={r.name}>
                    <th scope="row">{r.name}</th>
                    <td>
                      <Status status={r.status} />
                      {r.draining && r.status !== "draining" ? (
                        <>
                          {" "}
                          <Status status="draining" />
                        </>
                      ) : null}
                    </td>
                    <td>
                      {(r.labels || []).map((l) => (
                        <span class="tag" key={l}>
                          {l}
                        </span>
                      ))}
                    </td>
                    <td>{build ? <Link href={`/builds/${build.id}`}>{buildName(build)}</Link> : "—"}</td>
                    <td>
                      <Ago ts={r.last_heartbeat_at} />
                    </td>
                    {manage ? (
                      <td class="actions">
                        {r.draining ? (
                          <Action class="small" aria-label={`Undrain ${r.name}`} run={async () => replace((await post(`/v1/runners/${r.id}/undrain`)).runner)}>
                            Undrain
                          </Action>
                        ) : (
                          <Action class="small" aria-label={`Drain ${r.name}`} run={async () => replace((await post(`/v1/runners/${r.id}/drain`)).runner)}>
                            Drain
                          </Action>
                        )}
                        <Action
                          class="small danger"
                          aria-label={`Delete ${r.name}`}
                          confirm={`Delete runner ${r.name}?`}
                          run={async () => {
                            await del(`/v1/runners/${r.id}`);
                            runners.reload();
                          }}
                        >
                          Delete
                        </Action>
                      </td>
                    ) : null}
                  </tr>
                );
              })}
            </tbody>
          </table>
        ) : (
          <p class="empty">No runners yet.{manage ? " Create an enrollment token below and start `oore runner` with it." : ""}</p>
        )
      ) : (
        <p class="loading">Loading…</p>
      )}
      {manage ? <EnrollmentTokens /> : null}
    </section>
  );
}

function EnrollmentTokens() {
  const tokens = useLoad(() => get("/v1/runner-enrollment-tokens"), []);
  const [shown, setShown] = useState(null);
  const [error, setError] = useState(null);
  const [form, setForm] = useState({ label: "", labels: "", ttl: "24", uses: "1" });
  const ids = { label: useId(), labels: useId(), ttl: useId(), uses: useId() };
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value });
  const now = Date.now() / 1000;

  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const body = { label: form.label.trim(), labels: form.labels.split(/[\s,]+/).filter(Boolean) };
      if (form.ttl) body.ttl_seconds = Math.round(Number(form.ttl) * 3600);
      if (form.uses) body.max_uses = Number(form.uses);
      const answer = await post("/v1/runner-enrollment-tokens", body);
      setShown(answer.token);
      setForm({ ...form, label: "" });
      tokens.reload();
    } catch (err) {
      setError(err);
    }
  };

  return (
    <>
      <h2>Enrollment tokens</h2>
      <p class="hint">
        A runner registers with one: <code>OORE_RUNNER_ENROLLMENT_TOKEN=&lt;token&gt; oore runner --server {window.location.origin}</code>
      </p>
      {shown ? <ShownOnce title="Enrollment token created." value={shown} onDone={() => setShown(null)} /> : null}
      <form class="panel grid" onSubmit={create} aria-label="Create an enrollment token">
        <Field label="Label" id={ids.label}>
          <input id={ids.label} value={form.label} onInput={set("label")} required />
        </Field>
        <Field label="Runner labels (comma separated)" id={ids.labels}>
          <input id={ids.labels} value={form.labels} onInput={set("labels")} placeholder="linux, android" />
        </Field>
        <Field label="Valid for (hours)" id={ids.ttl} hint="empty: no expiry">
          <input id={ids.ttl} type="number" min="0.02" step="any" value={form.ttl} onInput={set("ttl")} />
        </Field>
        <Field label="Uses" id={ids.uses} hint="empty: unlimited">
          <input id={ids.uses} type="number" min="1" value={form.uses} onInput={set("uses")} />
        </Field>
        <div>
          <button class="primary">Create token</button>
        </div>
      </form>
      <ErrorNote error={error || tokens.error} />
      {tokens.data?.tokens?.length ? (
        <table class="tokens">
          <thead>
            <tr>
              <th scope="col">Label</th>
              <th scope="col">Runner labels</th>
              <th scope="col">Uses</th>
              <th scope="col">Expires</th>
              <th scope="col">State</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.data.tokens.map((t) => {
              const state = t.revoked_at ? "revoked" : t.expires_at && t.expires_at < now ? "expired" : t.max_uses && t.uses >= t.max_uses ? "used up" : "active";
              return (
                <tr key={t.id}>
                  <td>{t.label}</td>
                  <td>{(t.labels || []).join(", ")}</td>
                  <td>
                    {t.uses}
                    {t.max_uses ? ` / ${t.max_uses}` : ""}
                  </td>
                  <td>{t.expires_at ? formatDate(t.expires_at) : "never"}</td>
                  <td>{state}</td>
                  <td>
                    {state === "active" ? (
                      <Action
                        class="small danger"
                        aria-label={`Revoke ${t.label}`}
                        confirm={`Revoke enrollment token ${t.label}?`}
                        run={async () => {
                          await del(`/v1/runner-enrollment-tokens/${t.id}`);
                          tokens.reload();
                        }}
                      >
                        Revoke
                      </Action>
                    ) : null}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </>
  );
}
