// Projects (create, edit, members and roles) and pipelines (create, edit), with the
// pipeline checked by POST /v1/pipelines/validate as the user types and every problem
// shown at the field its path names.

import { useEffect, useRef, useState } from "preact/hooks";
import { del, get, patch, post, query } from "../api.js";
import { Action, ErrorNote, Field, Link, can, formatDate, navigate, useId, useLoad } from "../ui.jsx";
import { BuildTable, TriggerForm, canTrigger, useLiveBuilds } from "./builds.jsx";

export function ProjectsPage({ user }) {
  const projects = useLoad(() => get("/v1/projects?limit=200&sort=name&direction=asc"), []);
  const [creating, setCreating] = useState(false);
  return (
    <section>
      <div class="page-head">
        <h1>Projects</h1>
        {can(user, "createProject") ? (
          <button type="button" class="primary" aria-expanded={creating ? "true" : "false"} onClick={() => setCreating(!creating)}>
            New project
          </button>
        ) : null}
      </div>
      {creating ? <NewProject /> : null}
      <ErrorNote error={projects.error} />
      {projects.data ? (
        projects.data.projects.length ? (
          <table>
            <thead>
              <tr>
                <th scope="col">Project</th>
                <th scope="col">Repository</th>
                <th scope="col">Default branch</th>
                <th scope="col">Your role</th>
              </tr>
            </thead>
            <tbody>
              {projects.data.projects.map((p) => (
                <tr key={p.id}>
                  <td>
                    <Link href={`/projects/${p.id}`}>{p.name}</Link>
                    {p.description ? <div class="hint">{p.description}</div> : null}
                  </td>
                  <td>{p.repository_full_name || ""}</td>
                  <td>{p.default_branch || ""}</td>
                  <td>{p.current_user_role}</td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="empty">No projects yet.</p>
        )
      ) : (
        <p class="loading">Loading…</p>
      )}
    </section>
  );
}

function NewProject() {
  const status = useLoad(() => get("/v1/public/setup-status", { quiet: true }), []);
  const repos = useLoad(() => get("/v1/integration-repositories?limit=100").catch(() => ({ repositories: [] })), []);
  const local = status.data?.runtime_mode !== "remote";
  const [form, setForm] = useState({ name: "", description: "", path: "", repository_id: "", branch: "" });
  const [source, setSource] = useState("path");
  const [error, setError] = useState(null);
  const ids = { name: useId(), desc: useId(), path: useId(), repo: useId(), branch: useId() };
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value });
  const useRepo = !local || source === "repo";
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const body = { name: form.name.trim() };
      if (form.description.trim()) body.description = form.description.trim();
      if (useRepo) body.repository_id = form.repository_id;
      else body.local_repository_path = form.path.trim();
      if (form.branch.trim()) body.default_branch = form.branch.trim();
      const { project } = await post("/v1/projects", body);
      navigate(`/projects/${project.id}`);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="panel" onSubmit={submit} aria-label="New project">
      <h2>New project</h2>
      <div class="grid">
        <Field label="Name" id={ids.name}>
          <input id={ids.name} value={form.name} onInput={set("name")} required />
        </Field>
        <Field label="Description" id={ids.desc}>
          <input id={ids.desc} value={form.description} onInput={set("description")} />
        </Field>
      </div>
      {local ? (
        <fieldset class="choice">
          <legend>Source</legend>
          <label>
            <input type="radio" name="source" checked={source === "path"} onChange={() => setSource("path")} /> A git repository on this machine
          </label>
          <label>
            <input type="radio" name="source" checked={source === "repo"} onChange={() => setSource("repo")} /> A connected repository
          </label>
        </fieldset>
      ) : null}
      <div class="grid">
        {useRepo ? (
          <Field label="Repository" id={ids.repo}>
            <select id={ids.repo} value={form.repository_id} onChange={set("repository_id")} required>
              <option value="">Choose…</option>
              {(repos.data?.repositories || []).map((r) => (
                <option key={r.id} value={r.id}>
                  {r.full_name}
                </option>
              ))}
            </select>
          </Field>
        ) : (
          <Field label="Repository path" id={ids.path} hint="an absolute path to a git work tree or bare repository">
            <input id={ids.path} value={form.path} onInput={set("path")} required placeholder="/home/me/src/app" />
          </Field>
        )}
        <Field label="Default branch" id={ids.branch} hint="empty: the repository's current branch">
          <input id={ids.branch} value={form.branch} onInput={set("branch")} />
        </Field>
      </div>
      <button class="primary">Create project</button>
      <ErrorNote error={error} />
    </form>
  );
}

export function ProjectPage({ id, user }) {
  const detail = useLoad(() => get(`/v1/projects/${id}`), [id]);
  const pipelines = useLoad(() => get(`/v1/projects/${id}/pipelines?limit=200&sort=name&direction=asc`), [id]);
  const builds = useLoad(() => get(`/v1/builds${query({ project_id: id, limit: 10, sort: "created_at", direction: "desc" })}`), [id]);
  useLiveBuilds(builds, (b) => b.project_id === id);
  const [editing, setEditing] = useState(false);
  const [newPipeline, setNewPipeline] = useState(false);
  const [trigger, setTrigger] = useState(false);
  if (detail.error) return <ErrorNote error={detail.error} />;
  if (!detail.data) return <p class="loading">Loading…</p>;
  const project = detail.data.project;
  const role = detail.data.current_user_role || project.current_user_role;
  const maintainer = role === "maintainer";
  const managePipelines = maintainer || role === "developer";

  return (
    <section>
      <p class="crumbs">
        <Link href="/projects">Projects</Link>
      </p>
      <div class="page-head">
        <h1>{project.name}</h1>
        <span class="actions">
          {maintainer ? (
            <button type="button" aria-expanded={editing ? "true" : "false"} onClick={() => setEditing(!editing)}>
              Edit project
            </button>
          ) : null}
          {canTrigger(user) && managePipelines ? (
            <button type="button" class="primary" onClick={() => setTrigger(!trigger)} aria-expanded={trigger ? "true" : "false"}>
              Trigger a build
            </button>
          ) : null}
        </span>
      </div>
      {project.description ? <p>{project.description}</p> : null}
      <dl class="meta">
        <div>
          <dt>Repository</dt>
          <dd>{project.repository_full_name || "—"}</dd>
        </div>
        <div>
          <dt>Default branch</dt>
          <dd>{project.default_branch || "—"}</dd>
        </div>
        <div>
          <dt>Your role</dt>
          <dd>{role}</dd>
        </div>
        <div>
          <dt>Created</dt>
          <dd>{formatDate(project.created_at)}</dd>
        </div>
      </dl>
      {editing ? <EditProject project={project} onSaved={() => { setEditing(false); detail.reload(); }} /> : null}
      {trigger ? <TriggerForm projects={[project]} initial={project.id} /> : null}

      <div class="page-head">
        <h2>Pipelines</h2>
        {managePipelines ? (
          <button type="button" onClick={() => setNewPipeline(!newPipeline)} aria-expanded={newPipeline ? "true" : "false"}>
            New pipeline
          </button>
        ) : null}
      </div>
      {newPipeline ? <PipelineForm projectId={id} onSaved={(p) => { setNewPipeline(false); pipelines.reload(); navigate(`/pipelines/${p.id}`); }} /> : null}
      <ErrorNote error={pipelines.error} />
      {pipelines.data?.pipelines?.length ? (
        <table>
          <thead>
            <tr>
              <th scope="col">Pipeline</th>
              <th scope="col">Config</th>
              <th scope="col">Enabled</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {pipelines.data.pipelines.map((p) => (
              <tr key={p.id}>
                <td>
                  <Link href={`/pipelines/${p.id}`}>{p.name}</Link>
                </td>
                <td>
                  <code>{p.config_path}</code>
                  {p.config_path_explicit ? "" : " (or the settings below it)"}
                </td>
                <td>{p.enabled ? "yes" : "no"}</td>
                <td>{formatDate(p.updated_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : pipelines.data ? (
        <p class="empty">No pipelines yet.</p>
      ) : null}

      <h2>Recent builds</h2>
      {builds.data ? <BuildTable builds={builds.data.builds} user={user} onChanged={builds.reload} /> : null}
      <p>
        <Link href={`/builds?project_id=${id}`}>All builds of {project.name} →</Link>
      </p>
      <Members projectId={id} canManage={maintainer} />
      {maintainer ? (
        <>
          <h2>Danger zone</h2>
          <Action
            class="danger"
            confirm={`Delete project ${project.name}, its pipelines, builds and artifacts?`}
            run={async () => {
              await del(`/v1/projects/${id}`);
              navigate("/projects");
            }}
          >
            Delete project
          </Action>
        </>
      ) : null}
    </section>
  );
}

function EditProject({ project, onSaved }) {
  const [form, setForm] = useState({ name: project.name, description: project.description || "", branch: project.default_branch || "" });
  const [error, setError] = useState(null);
  const ids = { name: useId(), desc: useId(), branch: useId() };
  const set = (key) => (e) => setForm({ ...form, [key]: e.currentTarget.value });
  return (
    <form
      class="panel"
      aria-label="Edit project"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          const body = { name: form.name.trim(), description: form.description.trim() };
          if (form.branch.trim()) body.default_branch = form.branch.trim();
          await patch(`/v1/projects/${project.id}`, body);
          onSaved();
        } catch (err) {
          setError(err);
        }
      }}
    >
      <div class="grid">
        <Field label="Name" id={ids.name}>
          <input id={ids.name} value={form.name} onInput={set("name")} required />
        </Field>
        <Field label="Description" id={ids.desc}>
          <input id={ids.desc} value={form.description} onInput={set("description")} />
        </Field>
        <Field label="Default branch" id={ids.branch}>
          <input id={ids.branch} value={form.branch} onInput={set("branch")} />
        </Field>
      </div>
      <button class="primary">Save</button>
      <ErrorNote error={error} />
    </form>
  );
}

const PROJECT_ROLES = ["maintainer", "developer", "viewer"];

function Members({ projectId, canManage }) {
  const members = useLoad(() => get(`/v1/projects/${projectId}/members`), [projectId]);
  const candidates = useLoad(() => (canManage ? get(`/v1/projects/${projectId}/members/candidates`) : { users: [] }), [projectId, canManage]);
  const [add, setAdd] = useState({ user_id: "", role: "developer" });
  const [error, setError] = useState(null);
  const ids = { user: useId(), role: useId() };
  const list = members.data?.members || [];
  const people = candidates.data?.candidates || candidates.data?.users || [];
  const act = async (fn) => {
    setError(null);
    try {
      await fn();
      members.reload();
      candidates.reload();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <>
      <h2>Members</h2>
      <p class="hint">Owners and admins can use every project as maintainers.</p>
      <ErrorNote error={members.error || error} />
      {list.length ? (
        <table>
          <thead>
            <tr>
              <th scope="col">Person</th>
              <th scope="col">Project role</th>
              {canManage ? (
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              ) : null}
            </tr>
          </thead>
          <tbody>
            {list.map((m) => {
              const who = m.email || m.user?.email || m.user_id;
              const uid = m.user_id || m.user?.id;
              return (
                <tr key={uid}>
                  <td>{who}</td>
                  <td>
                    {canManage ? (
                      <select
                        aria-label={`Project role of ${who}`}
                        value={m.role}
                        onChange={(e) => {
                          const role = e.currentTarget.value;
                          act(() => patch(`/v1/projects/${projectId}/members/${uid}`, { role }));
                        }}
                      >
                        {PROJECT_ROLES.map((r) => (
                          <option key={r} value={r}>
                            {r}
                          </option>
                        ))}
                      </select>
                    ) : (
                      m.role
                    )}
                  </td>
                  {canManage ? (
                    <td>
                      <Action class="small danger" aria-label={`Remove ${who}`} confirm={`Remove ${who} from the project?`} run={() => act(() => del(`/v1/projects/${projectId}/members/${uid}`))}>
                        Remove
                      </Action>
                    </td>
                  ) : null}
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : members.data ? (
        <p class="empty">No members besides owners and admins.</p>
      ) : null}
      {canManage && people.length ? (
        <form
          class="panel grid"
          aria-label="Add a member"
          onSubmit={(e) => {
            e.preventDefault();
            act(() => post(`/v1/projects/${projectId}/members`, add));
          }}
        >
          <Field label="Person" id={ids.user}>
            <select id={ids.user} value={add.user_id} onChange={(e) => setAdd({ ...add, user_id: e.currentTarget.value })} required>
              <option value="">Choose…</option>
              {people.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.email} ({u.role.replace("_", " ")})
                </option>
              ))}
            </select>
          </Field>
          <Field label="Project role" id={ids.role}>
            <select id={ids.role} value={add.role} onChange={(e) => setAdd({ ...add, role: e.currentTarget.value })}>
              {PROJECT_ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </Field>
          <div>
            <button class="primary">Add member</button>
          </div>
        </form>
      ) : null}
    </>
  );
}

// -- pipelines ----------------------------------------------------------------------------

const PLATFORMS = ["android", "ios", "macos"];
const EVENTS = ["push", "pull_request", "tag_push"];
const lines = (text) => text.split("\n").map((l) => l.trim()).filter(Boolean);

function toForm(p) {
  const ex = p?.execution_config || {};
  return {
    name: p?.name || "",
    config_path: p?.config_path || ".oore.yaml",
    config_path_explicit: Boolean(p?.config_path_explicit),
    platforms: ex.platforms || ["android"],
    pre_build: (ex.commands?.pre_build || []).join("\n"),
    build: (ex.commands?.build || []).join("\n"),
    post_build: (ex.commands?.post_build || []).join("\n"),
    artifact_patterns: (ex.artifact_patterns || []).join("\n"),
    env: (ex.env || []).map((e) => `${e.key}=${e.value}`).join("\n"),
    events: p?.trigger_config?.events || [],
    branches: (p?.trigger_config?.branches || []).join("\n"),
    cancel_previous: Boolean(p?.concurrency?.cancel_previous),
    max_concurrent: p?.concurrency?.max_concurrent ?? "",
    enabled: p ? p.enabled : true,
    _base: ex,
  };
}

function toBody(form) {
  const env = lines(form.env).map((l) => {
    const eq = l.indexOf("=");
    return eq < 0 ? { key: l, value: "" } : { key: l.slice(0, eq).trim(), value: l.slice(eq + 1) };
  });
  return {
    name: form.name.trim(),
    config_path: form.config_path.trim(),
    config_path_explicit: form.config_path_explicit,
    execution_config: {
      ...form._base,
      platforms: form.platforms,
      commands: { pre_build: lines(form.pre_build), build: lines(form.build), post_build: lines(form.post_build) },
      artifact_patterns: lines(form.artifact_patterns),
      env,
    },
    trigger_config: { events: form.events, branches: lines(form.branches) },
    concurrency: {
      cancel_previous: form.cancel_previous,
      max_concurrent: form.max_concurrent === "" ? null : Number(form.max_concurrent),
    },
  };
}

// Which field shows a problem: the longest path prefix listed here.
const FIELD_OF = [
  ["config_path_explicit", "config_path"],
  ["config_path", "config_path"],
  ["execution_config.platforms", "platforms"],
  ["execution_config.commands.pre_build", "pre_build"],
  ["execution_config.commands.build", "build"],
  ["execution_config.commands.post_build", "post_build"],
  ["execution_config.artifact_patterns", "artifact_patterns"],
  ["execution_config.env", "env"],
  ["trigger_config.events", "events"],
  ["trigger_config.branches", "branches"],
  ["concurrency", "max_concurrent"],
];

function placeProblems(errors) {
  const at = {};
  const other = [];
  for (const text of errors) {
    const hit = FIELD_OF.find(([prefix]) => text.startsWith(prefix));
    if (hit) (at[hit[1]] = at[hit[1]] || []).push(text);
    else other.push(text);
  }
  return { at, other };
}

/** POST /v1/pipelines/validate, 300 ms after the last change. */
function useValidation(body) {
  const [result, setResult] = useState({ valid: true, errors: [] });
  const key = JSON.stringify(body);
  const seq = useRef(0);
  useEffect(() => {
    const mine = ++seq.current;
    const t = setTimeout(async () => {
      try {
        const { name: _name, ...rest } = body;
        const answer = await post("/v1/pipelines/validate", rest);
        if (mine === seq.current) setResult(answer);
      } catch {
        /* shown when saving */
      }
    }, 300);
    return () => clearTimeout(t);
  }, [key]);
  return result;
}

export function PipelineForm({ projectId, pipeline, onSaved, readOnly = false }) {
  const [form, setForm] = useState(() => toForm(pipeline));
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState("");
  const ids = {
    name: useId(), path: useId(), pre: useId(), build: useId(), post: useId(), art: useId(), env: useId(), branches: useId(), max: useId(),
  };
  const body = toBody(form);
  const validation = useValidation(body);
  const problems = placeProblems(validation.errors || []);
  const set = (key) => (e) => {
    const t = e.currentTarget;
    setForm({ ...form, [key]: t.type === "checkbox" ? t.checked : t.value });
    setSaved("");
  };
  const toggleIn = (key, value) => () => {
    const list = form[key].includes(value) ? form[key].filter((v) => v !== value) : [...form[key], value];
    setForm({ ...form, [key]: list });
  };
  const show = (key) => (problems.at[key] ? problems.at[key].join("; ") : undefined);

  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const answer = pipeline
        ? await patch(`/v1/pipelines/${pipeline.id}`, { ...body, enabled: form.enabled })
        : await post(`/v1/projects/${projectId}/pipelines`, body);
      setSaved("Saved.");
      onSaved(answer.pipeline);
    } catch (err) {
      setError(err);
    }
  };

  return (
    <form class="panel pipeline-form" onSubmit={submit} aria-label={pipeline ? "Edit pipeline" : "New pipeline"}>
      <fieldset disabled={readOnly}>
        <div class="grid">
          <Field label="Name" id={ids.name}>
            <input id={ids.name} value={form.name} onInput={set("name")} required />
          </Field>
          <Field label="Config file in the repository" id={ids.path} error={show("config_path")} hint="a repository file wins over the settings below unless none exists">
            <input id={ids.path} value={form.config_path} onInput={set("config_path")} aria-invalid={show("config_path") ? "true" : undefined} />
          </Field>
        </div>
        <label class="check">
          <input type="checkbox" checked={form.config_path_explicit} onChange={set("config_path_explicit")} /> Always use this file (no fallback to .oore.yml)
        </label>
        <fieldset class="choice" aria-invalid={show("platforms") ? "true" : undefined}>
          <legend>Platforms</legend>
          {PLATFORMS.map((p) => (
            <label key={p}>
              <input type="checkbox" checked={form.platforms.includes(p)} onChange={toggleIn("platforms", p)} /> {p}
            </label>
          ))}
          {show("platforms") ? (
            <small class="problem" role="alert">
              {show("platforms")}
            </small>
          ) : null}
        </fieldset>
        <div class="grid">
          <Field label="Before the build (one command a line)" id={ids.pre} error={show("pre_build")}>
            <textarea id={ids.pre} rows={3} value={form.pre_build} onInput={set("pre_build")} />
          </Field>
          <Field label="Build commands" id={ids.build} error={show("build")}>
            <textarea id={ids.build} rows={3} value={form.build} onInput={set("build")} />
          </Field>
          <Field label="After the build" id={ids.post} error={show("post_build")}>
            <textarea id={ids.post} rows={3} value={form.post_build} onInput={set("post_build")} />
          </Field>
          <Field label="Artifact patterns (one a line)" id={ids.art} error={show("artifact_patterns")}>
            <textarea id={ids.art} rows={3} value={form.artifact_patterns} onInput={set("artifact_patterns")} />
          </Field>
          <Field label="Environment (KEY=value, one a line)" id={ids.env} error={show("env")}>
            <textarea id={ids.env} rows={3} value={form.env} onInput={set("env")} />
          </Field>
          <Field label="Branches that trigger it (patterns, one a line)" id={ids.branches} error={show("branches")}>
            <textarea id={ids.branches} rows={3} value={form.branches} onInput={set("branches")} />
          </Field>
        </div>
        <fieldset class="choice">
          <legend>Events that trigger it</legend>
          {EVENTS.map((ev) => (
            <label key={ev}>
              <input type="checkbox" checked={form.events.includes(ev)} onChange={toggleIn("events", ev)} /> {ev.replace("_", " ")}
            </label>
          ))}
          {show("events") ? (
            <small class="problem" role="alert">
              {show("events")}
            </small>
          ) : null}
        </fieldset>
        <div class="grid">
          <Field label="Builds at once (empty: no limit)" id={ids.max} error={show("max_concurrent")}>
            <input id={ids.max} type="number" value={form.max_concurrent} onInput={set("max_concurrent")} />
          </Field>
        </div>
        <label class="check">
          <input type="checkbox" checked={form.cancel_previous} onChange={set("cancel_previous")} /> A new build cancels the previous one
        </label>
        {pipeline ? (
          <label class="check">
            <input type="checkbox" checked={form.enabled} onChange={set("enabled")} /> Enabled
          </label>
        ) : null}
        <div class="validation" aria-live="polite" data-testid="validation">
          {validation.valid ? <span class="ok">✓ Valid</span> : <span class="bad">✗ {validation.errors.length} problem(s)</span>}
          {problems.other.length ? (
            <ul>
              {problems.other.map((p) => (
                <li key={p}>{p}</li>
              ))}
            </ul>
          ) : null}
        </div>
        {!readOnly ? <button class="primary">{pipeline ? "Save pipeline" : "Create pipeline"}</button> : null}
        <span role="status">{saved}</span>
      </fieldset>
      <ErrorNote error={error} />
    </form>
  );
}

/** The line of a YAML text that a problem path like `commands.build[0]` points at. */
export function lineOfPath(text, path) {
  const syntax = path.match(/line (\d+)/);
  if (syntax) return Number(syntax[1]);
  const parts = [];
  path.replace(/([^.[\]]+)|\[(\d+)\]/g, (_, key, index) => {
    parts.push(index !== undefined ? Number(index) : key);
    return "";
  });
  const rows = text.split("\n");
  let from = 0;
  let indent = -1;
  let found = 0;
  for (const part of parts) {
    let hit = -1;
    let count = -1;
    for (let i = from; i < rows.length; i++) {
      const row = rows[i];
      if (!row.trim() || row.trim().startsWith("#")) continue;
      const lead = row.length - row.trimStart().length;
      if (lead <= indent && i > from) break;
      if (typeof part === "number") {
        if (/^\s*- /.test(row) || /^\s*-$/.test(row)) {
          count++;
          if (count === part) {
            hit = i;
            break;
          }
        }
      } else if (row.trimStart().replace(/^- /, "").startsWith(`${part}:`)) {
        hit = i;
        break;
      }
    }
    if (hit < 0) break;
    found = hit + 1;
    from = hit;
    indent = rows[hit].length - rows[hit].trimStart().length;
    if (typeof part === "number") from = hit;
  }
  return found;
}

function YamlCheck() {
  const [text, setText] = useState("version: 1\nplatforms: [android]\ncommands:\n  build:\n    - echo hello\n");
  const [result, setResult] = useState({ valid: true, errors: [] });
  const id = useId();
  useEffect(() => {
    const t = setTimeout(async () => {
      try {
        setResult(await post("/v1/pipelines/validate", { repository_yaml: text }));
      } catch {
        /* ignore */
      }
    }, 300);
    return () => clearTimeout(t);
  }, [text]);
  const problems = (result.errors || []).map((p) => {
    const path = p.split(": ")[0];
    return { text: p, line: lineOfPath(text, path) };
  });
  const bad = new Set(problems.map((p) => p.line));
  const rows = text.split("\n");
  return (
    <div class="panel">
      <h2>Check a repository file</h2>
      <p class="hint">Paste a <code>.oore.yaml</code>: it is checked as you type; problems are shown at their line.</p>
      <div class="yaml-editor">
        <ol class="gutter" aria-hidden="true">
          {rows.map((_, i) => (
            <li key={i} class={bad.has(i + 1) ? "bad" : ""}>
              {bad.has(i + 1) ? "✗ " : ""}
              {i + 1}
            </li>
          ))}
        </ol>
        <textarea id={id} aria-label="Repository pipeline file" rows={Math.max(8, rows.length + 1)} value={text} spellcheck={false} onInput={(e) => setText(e.currentTarget.value)} />
      </div>
      <div class="validation" aria-live="polite" data-testid="yaml-validation">
        {result.valid ? <span class="ok">✓ Valid</span> : <span class="bad">✗ {problems.length} problem(s)</span>}
        <ul>
          {problems.map((p) => (
            <li key={p.text}>
              {p.line ? <span class="at">line {p.line}: </span> : null}
              {p.text}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}

export function PipelinePage({ id, user }) {
  const detail = useLoad(() => get(`/v1/pipelines/${id}`), [id]);
  const [savedAt, setSavedAt] = useState(0);
  if (detail.error) return <ErrorNote error={detail.error} />;
  if (!detail.data) return <p class="loading">Loading…</p>;
  const pipeline = detail.data.pipeline;
  const admin = ["owner", "admin"].includes(user.role);
  return (
    <section>
      <p class="crumbs">
        <Link href={`/projects/${pipeline.project_id}`}>Project</Link>
      </p>
      <div class="page-head">
        <h1>Pipeline {pipeline.name}</h1>
        <span class="actions">
          <Link href={`/builds?project_id=${pipeline.project_id}&pipeline_id=${pipeline.id}`}>{detail.data.build_count} builds →</Link>
        </span>
      </div>
      <PipelineForm
        key={`${pipeline.id}-${savedAt}`}
        projectId={pipeline.project_id}
        pipeline={pipeline}
        readOnly={user.role === "qa_viewer"}
        onSaved={() => {
          detail.reload();
          setSavedAt(Date.now());
        }}
      />
      <YamlCheck />
      {admin ? (
        <Action
          class="danger"
          confirm={`Delete pipeline ${pipeline.name} and its finished builds?`}
          run={async () => {
            await del(`/v1/pipelines/${id}`);
            navigate(`/projects/${pipeline.project_id}`);
          }}
        >
          Delete pipeline
        </Action>
      ) : null}
    </section>
  );
}
