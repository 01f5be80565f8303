// The builds list (filters, paging, trigger, cancel, rerun; live through the events
// stream) and the table the dashboard shares.

import { useEffect, useRef, useState } from "preact/hooks";
import { get, post, query } from "../api.js";
import { useEvents } from "../events.js";
import {
  ACTIVE,
  Action,
  Ago,
  ErrorNote,
  Field,
  Link,
  Pager,
  STATUSES,
  Status,
  TERMINAL,
  buildDuration,
  buildName,
  label,
  navigate,
  useId,
  useLoad,
} from "../ui.jsx";

export function canTrigger(user) {
  return user && user.role !== "qa_viewer";
}

export function BuildActions({ build, user, onChanged }) {
  if (!canTrigger(user)) return null;
  return (
    <span class="actions">
      {ACTIVE.includes(build.status) ? (
        <Action
          class="danger small"
          aria-label={`Cancel ${buildName(build)}`}
          run={async () => onChanged((await post(`/v1/builds/${build.id}/cancel`)).build)}
        >
          Cancel
        </Action>
      ) : null}
      {TERMINAL.includes(build.status) && build.status !== "expired" ? (
        <Action
          class="small"
          aria-label={`Rerun ${buildName(build)}`}
          run={async () => {
            const { build: next } = await post(`/v1/builds/${build.id}/rerun`);
            navigate(`/builds/${next.id}`);
          }}
        >
          Rerun
        </Action>
      ) : null}
    </span>
  );
}

export function BuildTable({ builds, user, onChanged, caption }) {
  if (!builds.length) return <p class="empty">No builds.</p>;
  return (
    <table class="builds">
      {caption ? <caption>{caption}</caption> : null}
      <thead>
        <tr>
          <th scope="col">Status</th>
          <th scope="col">Build</th>
          <th scope="col">Pipeline</th>
          <th scope="col">Branch</th>
          <th scope="col">Commit</th>
          <th scope="col">Triggered by</th>
          <th scope="col">Queued</th>
          <th scope="col">Duration</th>
          <th scope="col">
            <span class="sr-only">Actions</span>
          </th>
        </tr>
      </thead>
      <tbody>
        {builds.map((b) => (
          <tr key={b.id} data-build={b.id}>
            <td>
              <Status status={b.status} />
            </td>
            <td>
              <Link href={`/builds/${b.id}`}>{buildName(b)}</Link>
            </td>
            <td>{b.context?.pipeline_name || ""}</td>
            <td>{b.branch || ""}</td>
            <td>
              <code>{(b.commit_sha || "").slice(0, 10)}</code>
            </td>
            <td>{b.trigger_actor || b.trigger_type}</td>
            <td>
              <Ago ts={b.queued_at || b.created_at} />
            </td>
            <td>{buildDuration(b)}</td>
            <td>
              <BuildActions build={b} user={user} onChanged={onChanged} />
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Keeps a loaded list of builds current from `build` events. */
export function useLiveBuilds(list, matches) {
  const timer = useRef(null);
  useEvents((type, data) => {
    if (type === "reconnected") {
      list.reload();
      return;
    }
    if (type !== "build" || !data?.build) return;
    const build = data.build;
    const builds = list.data?.builds || [];
    if (builds.some((b) => b.id === build.id)) {
      list.setData((d) => ({ ...d, builds: d.builds.map((b) => (b.id === build.id ? { ...b, ...build } : b)) }));
      if (matches && !matches(build)) schedule();
    } else if (!matches || matches(build)) {
      schedule();
    }
  });
  function schedule() {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      list.reload();
    }, 250);
  }
  useEffect(() => () => timer.current && clearTimeout(timer.current), []);
}

const LIMIT = 25;

function readFilters() {
  const p = new URLSearchParams(window.location.search);
  return {
    project_id: p.get("project_id") || "",
    pipeline_id: p.get("pipeline_id") || "",
    status: p.get("status") || "",
    branch: p.get("branch") || "",
    offset: Number(p.get("offset") || 0),
  };
}

export function BuildsPage({ user }) {
  const [filters, setFilters] = useState(readFilters);
  const [branchText, setBranchText] = useState(filters.branch);
  const [showTrigger, setShowTrigger] = useState(false);
  const ids = { project: useId(), pipeline: useId(), status: useId(), branch: useId() };
  const projects = useLoad(() => get("/v1/projects?limit=200&sort=name&direction=asc"), []);
  const pipelines = useLoad(
    () => (filters.project_id ? get(`/v1/projects/${filters.project_id}/pipelines?limit=200&sort=name&direction=asc`) : { pipelines: [] }),
    [filters.project_id],
  );
  const list = useLoad(
    () =>
      get(
        `/v1/builds${query({
          project_id: filters.project_id,
          pipeline_id: filters.pipeline_id,
          status: filters.status,
          branch: filters.branch,
          limit: LIMIT,
          offset: filters.offset,
          sort: "created_at",
          direction: "desc",
        })}`,
      ),
    [filters.project_id, filters.pipeline_id, filters.status, filters.branch, filters.offset],
  );

  const update = (change) => {
    const next = { ...filters, offset: 0, ...change };
    setFilters(next);
    const { offset, ...rest } = next;
    history.replaceState(null, "", `/builds${query({ ...rest, offset: offset || "" })}`);
  };

  useEffect(() => {
    const t = setTimeout(() => branchText !== filters.branch && update({ branch: branchText.trim() }), 300);
    return () => clearTimeout(t);
  }, [branchText]);

  useLiveBuilds(list, (b) => {
    if (filters.offset) return false;
    if (filters.project_id && b.project_id !== filters.project_id) return false;
    if (filters.pipeline_id && b.pipeline_id !== filters.pipeline_id) return false;
    if (filters.status && !filters.status.split(",").includes(b.status)) return false;
    if (filters.branch && b.branch !== filters.branch) return false;
    return true;
  });

  const onChanged = (build) =>
    list.setData((d) => ({ ...d, builds: d.builds.map((b) => (b.id === build.id ? { ...b, ...build } : b)) }));

  return (
    <section>
      <div class="page-head">
        <h1>Builds</h1>
        {canTrigger(user) ? (
          <button type="button" class="primary" aria-expanded={showTrigger ? "true" : "false"} onClick={() => setShowTrigger(!showTrigger)}>
            Trigger a build
          </button>
        ) : null}
      </div>
      {showTrigger ? <TriggerForm projects={projects.data?.projects || []} initial={filters.project_id} /> : null}
      <form class="filters" role="search" aria-label="Filter builds" onSubmit={(e) => e.preventDefault()}>
        <Field label="Project" id={ids.project}>
          <select id={ids.project} value={filters.project_id} onChange={(e) => update({ project_id: e.currentTarget.value, pipeline_id: "" })}>
            <option value="">All projects</option>
            {(projects.data?.projects || []).map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Pipeline" id={ids.pipeline}>
          <select id={ids.pipeline} value={filters.pipeline_id} disabled={!filters.project_id} onChange={(e) => update({ pipeline_id: e.currentTarget.value })}>
            <option value="">All pipelines</option>
            {(pipelines.data?.pipelines || []).map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Status" id={ids.status}>
          <select id={ids.status} value={filters.status} onChange={(e) => update({ status: e.currentTarget.value })}>
            <option value="">Any status</option>
            <option value={ACTIVE.join(",")}>Active (queued or running)</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {label(s)}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Branch" id={ids.branch}>
          <input id={ids.branch} value={branchText} onInput={(e) => setBranchText(e.currentTarget.value)} placeholder="any" />
        </Field>
      </form>
      <ErrorNote error={list.error} />
      {list.data ? (
        <>
          <BuildTable builds={list.data.builds} user={user} onChanged={onChanged} />
          <Pager offset={filters.offset} limit={LIMIT} total={list.data.total} onChange={(offset) => update({ offset })} />
        </>
      ) : (
        <p class="loading">Loading…</p>
      )}
    </section>
  );
}

export function TriggerForm({ projects, initial = "", initialPipeline = "" }) {
  const [projectId, setProjectId] = useState(initial || projects[0]?.id || "");
  const [pipelineId, setPipelineId] = useState(initialPipeline);
  const [branch, setBranch] = useState("");
  const [commit, setCommit] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const ids = { project: useId(), pipeline: useId(), branch: useId(), commit: useId() };
  useEffect(() => {
    if (projects[0]) setProjectId((current) => current || projects[0].id);
  }, [projects]);
  const pipelines = useLoad(
    () => (projectId ? get(`/v1/projects/${projectId}/pipelines?limit=200&sort=name&direction=asc`) : { pipelines: [] }),
    [projectId],
  );
  const project = projects.find((p) => p.id === projectId);
  useEffect(() => {
    const list = pipelines.data?.pipelines || [];
    if (list.length) setPipelineId((current) => (list.some((p) => p.id === current) ? current : list[0].id));
  }, [pipelines.data]);

  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body = { pipeline_id: pipelineId };
      if (branch.trim()) body.branch = branch.trim();
      if (commit.trim()) body.commit_sha = commit.trim();
      const { build } = await post(`/v1/projects/${projectId}/builds`, body);
      navigate(`/builds/${build.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="panel trigger" onSubmit={submit} aria-label="Trigger a build">
      <h2>Trigger a build</h2>
      <div class="grid">
        <Field label="Project" id={ids.project}>
          <select id={ids.project} value={projectId} onChange={(e) => setProjectId(e.currentTarget.value)} required>
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Pipeline" id={ids.pipeline}>
          <select id={ids.pipeline} value={pipelineId} onChange={(e) => setPipelineId(e.currentTarget.value)} required>
            {(pipelines.data?.pipelines || []).map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Branch" id={ids.branch} hint={project?.default_branch ? `default: ${project.default_branch}` : undefined}>
          <input id={ids.branch} value={branch} onInput={(e) => setBranch(e.currentTarget.value)} placeholder={project?.default_branch || ""} />
        </Field>
        <Field label="Commit (optional)" id={ids.commit}>
          <input id={ids.commit} value={commit} onInput={(e) => setCommit(e.currentTarget.value)} placeholder="branch head" />
        </Field>
      </div>
      <button class="primary" disabled={busy || !pipelineId}>
        Run
      </button>
      <ErrorNote error={error} />
    </form>
  );
}
