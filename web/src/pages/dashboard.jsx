// The dashboard: what runs and waits now, the runners, and recent builds (failures first).

import { get, query } from "../api.js";
import { useEvents } from "../events.js";
import { ACTIVE, ErrorNote, Link, can, useLoad } from "../ui.jsx";
import { BuildTable, useLiveBuilds } from "./builds.jsx";

const FAILED = ["failed", "timed_out"];

export function Dashboard({ user }) {
  const active = useLoad(() => get(`/v1/builds${query({ status: ACTIVE.join(","), limit: 50, sort: "created_at", direction: "desc" })}`), []);
  const recent = useLoad(() => get(`/v1/builds${query({ limit: 20, sort: "created_at", direction: "desc" })}`), []);
  const showRunners = can(user, "runners");
  const runners = useLoad(() => (showRunners ? get("/v1/runners?limit=100") : null), []);
  useLiveBuilds(active, (b) => ACTIVE.includes(b.status));
  useLiveBuilds(recent, () => true);
  useEvents((type, data) => {
    if (!showRunners) return;
    if (type === "reconnected") runners.reload();
    if (type !== "runner" || !data?.runner) return;
    runners.setData((d) => {
      if (!d) return d;
      const others = d.runners.filter((r) => r.id !== data.runner.id);
      return { ...d, runners: data.deleted ? others : [...others, data.runner] };
    });
  });

  const builds = active.data?.builds || [];
  const running = builds.filter((b) => b.status === "running" || b.status === "assigned");
  const queued = builds.filter((b) => b.status === "queued" || b.status === "scheduled");
  const list = (recent.data?.builds || []).slice();
  list.sort((a, b) => Number(FAILED.includes(b.status)) - Number(FAILED.includes(a.status)));
  const fleet = runners.data?.runners || [];
  const count = (pred) => fleet.filter(pred).length;
  const onChanged = () => {
    active.reload();
    recent.reload();
  };

  return (
    <section>
      <h1>Dashboard</h1>
      <div class="tiles">
        <div class="tile">
          <span class="num" data-testid="running-count">{running.length}</span> running
        </div>
        <div class="tile">
          <span class="num" data-testid="queued-count">{queued.length}</span> queued
        </div>
        {showRunners ? (
          <>
            <div class="tile">
              <span class="num">{count((r) => r.status === "online" && !r.draining)}</span> runners online
            </div>
            <div class="tile">
              <span class="num">{count((r) => r.status === "busy")}</span> busy
            </div>
            <div class="tile">
              <span class="num">{count((r) => r.draining)}</span> draining
            </div>
            <div class="tile">
              <span class="num">{count((r) => r.status === "offline")}</span> offline
            </div>
          </>
        ) : null}
      </div>
      <ErrorNote error={active.error || recent.error} />
      <h2>Running and queued</h2>
      {active.data ? <BuildTable builds={builds} user={user} onChanged={onChanged} /> : <p class="loading">Loading…</p>}
      <h2>Recent builds</h2>
      <p class="hint">Failures first.</p>
      {recent.data ? <BuildTable builds={list} user={user} onChanged={onChanged} /> : <p class="loading">Loading…</p>}
      <p>
        <Link href="/builds">All builds →</Link>
      </p>
    </section>
  );
}
